using System.ComponentModel;
using System.Diagnostics;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Actors.Reports;
using Scale.Host.Sweeps;
using Scale.Model;
using Scale.Model.Bench;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>`scale run SWEEP`: runs a sweep to completion on this machine; run again after an interruption, it resumes.</summary>
internal sealed class RunCommand : AsyncCommand<RunCommand.Settings>
{
    public sealed class Settings : ClusterClientSettings
    {
        [CommandArgument(0, "<SWEEP>"), Description("A built-in sweep (quickstart, bio, bio-ko, bio-qa, validation, asha-search) or a sweep .hocon file.")]
        public string Sweep { get; init; } = "";

        [CommandOption("--data-dir <DIR>"), Description("Journal, cached bases and checkpoints (default ./scale-data)."), DefaultValue("scale-data")]
        public string DataDir { get; init; } = "scale-data";

        [CommandOption("--threads <N>"), Description("The device's thread budget, shared by its concurrent trials; 0 = all cores (default)."), DefaultValue(0)]
        public int Threads { get; init; }

        [CommandOption("--devices|--device <DEVICES>"), Description("Comma-separated devices, one trainer each: cpu, cpu:N (more trainers on the CPU), cuda or cuda:N (a CUDA build). Default cpu."), DefaultValue("cpu")]
        public string Devices { get; init; } = "cpu";

        [CommandOption("--precision <TYPE>"), Description("fp32 (default), or bf16: mixed precision with the frozen base resident in bf16 (CUDA, or a CPU with bf16 units)."), DefaultValue("fp32")]
        public string Precision { get; init; } = "fp32";

        [CommandOption("--snapshot-every <N>"), Description("Events between snapshots of the sweep's state in the journal (recovery replays at most this many; default 100)."), DefaultValue(100)]
        public int SnapshotEvery { get; init; } = 100;

        [CommandOption("--plain"), Description("Plain progress lines instead of live bars (the default when output is redirected).")]
        public bool Plain { get; init; }

        [CommandOption("--http <ADDRESS>"), Description("The operators' endpoint (health, Prometheus metrics, JSON API): host:port, or off. Port 0 picks a free one."), DefaultValue("127.0.0.1:8787")]
        public string Http { get; init; } = "127.0.0.1:8787";

        [CommandOption("--http-token-file <FILE>"), Description("A file holding the endpoint's bearer token (or SCALE_HTTP_TOKEN); required to bind --http beyond loopback.")]
        public string? HttpTokenFile { get; init; }

        [CommandOption("--cluster <SEEDS>"), Description("Submit the sweep to a running cluster through these seeds (host:port, comma-separated) and follow it, instead of running it here.")]
        public string? Cluster { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        try
        {
            return await Run(settings, cancellation);
        }
        catch (Exception e) when (e is not (ArgumentException or CommandFailedException or OperationCanceledException) && settings.Cluster is not null)
        {
            throw new CommandFailedException($"following the sweep on the cluster stopped: {e.GetType().Name}: {e.Message}\n" +
                                             $"The sweep itself goes on in the cluster; `scale run --cluster {settings.Cluster} {settings.Sweep}` follows it again.", e);
        }
        catch (Exception e) when (e is not (ArgumentException or CommandFailedException or OperationCanceledException))
        {
            var sweep = settings.Sweep;
            throw new CommandFailedException(
                $"the sweep stopped: {e.GetType().Name}: {e.Message}\nNothing it recorded is lost (journal {SweepPaths.DatabaseFile(settings.DataDir)}); " +
                $"once the cause is fixed, run `scale run {sweep} --data-dir {settings.DataDir}` to resume it.", e);
        }
    }

    private static async Task<int> Run(Settings settings, CancellationToken cancellation)
    {
        if (settings.Cluster is { } seeds)
        {
            using var follow = Commands.NodeSettings.OnSignal(cancellation);
            return await Cluster.ClusterRun.SubmitAndFollow(SweepFiles.Load(settings.Sweep), Cluster.ClusterRun.Seeds(seeds), settings.ClientHost, settings.Tls(),
                                                           settings.Plain || Console.IsOutputRedirected, follow.Token);
        }
        TorchStartup.Start(settings.Precision);   // before libtorch loads and runs its first product
        var sweep = SweepFiles.Load(settings.Sweep);
        var token = OperatorEndpoint.Token(settings.HttpTokenFile);
        OperatorEndpoint.CheckAddress(settings.Http, token);   // every flag checked before the journal is created
        if (settings.SnapshotEvery < 1) throw new ArgumentException($"--snapshot-every must be at least 1, got {settings.SnapshotEvery}.");
        var devices = Devices.ParseList(settings.Devices);
        var precision = Devices.ParsePrecision(settings.Precision, devices);
        if (settings.Threads < 0) throw new ArgumentException($"--threads must be 0 (all cores) or more, got {settings.Threads}.");
        int budget = settings.Threads > 0 ? settings.Threads : Environment.ProcessorCount;
        var policy = TrialSlots.For(sweep, budget, devices.Count);
        int slotsPerDevice = policy.PerDevice, slots = policy.PerDevice * devices.Count, threadsPerTrial = policy.ThreadsPerTrial;
        var sweepDirectory = SweepPaths.SweepDirectory(settings.DataDir, sweep.Name);
        using var runLock = SweepLock.Acquire(sweepDirectory, sweep.Name);
        var wall = Stopwatch.StartNew();
        await using var system = await LocalRun.StartAsync(settings.DataDir, sweep.Name, settings.SnapshotEvery, cancellation);

        object started;
        try
        {
            started = await system.SubmitAsync(sweep);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{sweep.Source}: {e.Message}", e);
        }
        var state = await system.StateAsync();
        sweep.CheckResumes(state.Fingerprint, state.Order, $"in {settings.DataDir}");
        bool plain = settings.Plain || Console.IsOutputRedirected;
        if (started is Accepted { EventsPersisted: 0 })
            Console.WriteLine($"Resuming sweep {sweep.Name} from {SweepPaths.DatabaseFile(settings.DataDir)}: {SweepReport.Counts(state)}.");
        else
            Console.WriteLine($"Sweep {sweep.Name}: {sweep.Trials.Count} trials, up to {slots} at a time" +
                              (devices.Count > 1 ? $" ({slotsPerDevice} on each of {string.Join(", ", devices)})" : devices[0] == "cpu" ? "" : $" on {devices[0]}") +
                              $", {threadsPerTrial} thread(s) each" + (sweep.EveryTrialInLockStep && slots > 1 ? " in lock-step (sharing the base's forward pass)" : "") +
                              $", journal {SweepPaths.DatabaseFile(settings.DataDir)}.");
        if (budget > Environment.ProcessorCount)
            Console.WriteLine($"Note: a thread budget of {budget} on {Environment.ProcessorCount} cores oversubscribes them; trials will run slower than they could.");
        if (slots < sweep.MaxConcurrent && sweep.MaxConcurrent > budget)
            Console.WriteLine($"Note: max-concurrent {sweep.MaxConcurrent} is above the thread budget {budget}; running {slots} at a time so the cores are not oversubscribed.");

        await using var view = system.Node.View(settings.DataDir, seed: true, devices);
        await using var endpoint = await OperatorEndpoint.StartOrReport(settings.Http, view, token, Path.Combine(sweepDirectory, OperatorEndpoint.AddressFile));
        var runtime = TrialRuntimeOptions.ThroughManager(system.Manager, sweep, system.Node.SelfAddress, settings.DataDir, devices, precision, policy) with
        {
            PollInterval = TimeSpan.FromMilliseconds(500),
        };
        var trials = new LocalTrials(system.System, system.DataLoader, sweep, runtime, Math.Min(budget, Environment.ProcessorCount), system.Journal, system.StateAsync, system.Logs.CreateLogger("Scale.Sweep"));
        var timing = trials.Timing;
        // Ctrl+C or SIGTERM (a scheduler's stop) drains the trainer: running trials checkpoint at their next step and stop,
        // and resume from that checkpoint next time. Exit 130 after SIGINT, 143 after SIGTERM, as a shell reports them.
        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        int interruptedExit = 130;
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (interrupt.IsCancellationRequested) return;   // a second Ctrl+C ends the process at once
            e.Cancel = true;
            interrupt.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using var onTerm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
        {
            if (interrupt.IsCancellationRequested) return;   // a second SIGTERM ends the process at once
            context.Cancel = true;
            interruptedExit = 143;
            interrupt.Cancel();
        });
        try
        {
            if (!state.Finished)
            {
                // Nothing of an earlier process runs any more (this process holds the sweep's lock): its trials are pending again.
                await system.AskSweepAsync(new RequeueOrphans([]));
                if (plain) await trials.RunAsync(new PlainSweepView(Console.Out), interrupt.Token);
                else
                    await AnsiConsole.Progress().HideCompleted(true).AutoClear(false)
                        .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                        .StartAsync(ctx => trials.RunAsync(new LiveSweepView(ctx), interrupt.Token));
            }
        }
        catch (OperationCanceledException) when (interrupt.IsCancellationRequested)
        {
            // interrupted while the base was being prepared: nothing of the sweep had started
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        if (interrupt.IsCancellationRequested)
        {
            state = await system.StateAsync();
            Console.WriteLine($"Interrupted: {SweepReport.Counts(state)}. Run the same command to resume; running trials continue from their last checkpoint.");
            return interruptedExit;
        }
        state = await system.StateAsync();
        if (plain) Console.Write(SweepReport.Text(state));
        else AnsiConsole.Write(SweepReport.Table(state));
        double seconds = wall.Elapsed.TotalSeconds;
        Console.WriteLine($"Sweep {sweep.Name}: {SweepReport.Counts(state)}. Wall time {seconds:0.0} s this run.");
        if (timing.Trials > 0 && slots > 1)
            Console.WriteLine($"This run: base ready in {timing.BaseSeconds:0.0} s; {timing.Trials} trials finished here with {timing.TrainSeconds:0.0} s in training steps " +
                              $"and {timing.EvaluationSeconds:0.0} s in evaluation, summed over {slots} concurrent slots.");
        else if (timing.Trials > 0)
        {
            double busy = timing.BaseSeconds + timing.TrainSeconds + timing.EvaluationSeconds;
            Console.WriteLine($"This run: base ready in {timing.BaseSeconds:0.0} s; {timing.Trials} trials finished here with {timing.TrainSeconds:0.0} s in training steps " +
                              $"and {timing.EvaluationSeconds:0.0} s in evaluation; outside them (orchestration, {timing.CheckpointSeconds:0.0} s of checkpoint writes, start-up): " +
                              $"{Math.Max(0, seconds - busy):0.0} s = {100 * Math.Max(0, seconds - busy) / seconds:0.0}% of the wall time.");
        }
        Console.WriteLine($"Peak RSS {ProcessMemory.PeakResidentMegabytes():0} MB. Results: scale results {sweep.Name} --data-dir {settings.DataDir}");
        return 0;
    }
}
