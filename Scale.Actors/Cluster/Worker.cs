using Akka.Actor;
using Microsoft.Extensions.Logging;
using Scale.Actors.Reports;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Model;

namespace Scale.Actors.Cluster;

/// <summary>What a worker is given: where the data lives, its devices and threads, and where it says what it does.</summary>
internal sealed record WorkerOptions(string DataDirectory, IReadOnlyList<string> Devices, int Threads, TextWriter Output)
{
    /// <summary>Autocast type of this worker's trainers (bf16 on CUDA), or null for fp32.</summary>
    public TorchSharp.torch.ScalarType? Precision { get; init; }
    /// <summary>How long a sweep this worker could not prepare is left before it tries again (the cause may be fixed meanwhile).</summary>
    public TimeSpan SkipUnprepared { get; init; } = TimeSpan.FromMinutes(5);
    public TimeSpan Idle { get; init; } = TimeSpan.FromSeconds(2);
    public TimeSpan AskTimeout { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>
    /// How long a stop waits for running trials to checkpoint and for the coordinator to acknowledge it (within a
    /// scheduler's grace: Slurm's KillWait is 30 s by default); past it they stop and resume from their last acknowledged checkpoint.
    /// </summary>
    public TimeSpan DrainPatience { get; init; } = TimeSpan.FromSeconds(15);
}

/// <summary>
/// Asks a worker to stop its trial runtime (running trials checkpoint at their next step and stop) and itself; it answers
/// <see cref="WorkerStopped"/>.
/// </summary>
internal sealed record StopWorking
{
    public static readonly StopWorking Instance = new();
}

internal sealed record WorkerStopped
{
    public static readonly WorkerStopped Instance = new();
}

/// <summary>
/// What a worker does while it is a member, as an actor: it looks for a submitted sweep that is not finished, starts a
/// trial runtime for it (the sweep's base prepared in the shared data directory: one node trains it, the others wait
/// and load it; one trainer per device pulling the sweep's trials from its coordinator), and when the runtime ends
/// (the sweep is finished) looks again. A sweep it cannot prepare is said, reported to the manager and left for
/// <see cref="WorkerOptions.SkipUnprepared"/>; the worker goes on with the others. Checkpoints go under the shared data
/// directory, where any other worker can resume them.
/// </summary>
internal sealed class Worker : ReceiveActor, IWithTimers, IWithUnboundedStash
{
    private sealed record Look;
    private sealed record Found(SweepDefinition? Sweep);
    private sealed record RuntimeUp(int Generation, SweepDefinition Sweep, TrialRuntime Runtime);
    private sealed record NotPrepared(int Generation, SweepDefinition Sweep, Exception Error);
    private sealed record RuntimeDone(int Generation);

    private readonly WorkerOptions options;
    private readonly IActorRef manager, dataLoader;
    private readonly string selfAddress;
    private readonly ILogger log;
    private readonly Dictionary<string, DateTime> skipUntil = new();
    private readonly CancellationTokenSource stopping = new();
    private int generation;
    private (SweepDefinition Sweep, TrialRuntime Runtime)? working;

    public ITimerScheduler Timers { get; set; } = null!;
    public IStash Stash { get; set; } = null!;

    public Worker(WorkerOptions options, IActorRef manager, IActorRef dataLoader, string selfAddress, ILogger log)
    {
        (this.options, this.manager, this.dataLoader, this.selfAddress, this.log) = (options, manager, dataLoader, selfAddress, log);
        Looking();
    }

    public static Props Props(WorkerOptions options, IActorRef manager, IActorRef dataLoader, string selfAddress, ILogger log)
        => Akka.Actor.Props.Create(() => new Worker(options, manager, dataLoader, selfAddress, log));

    protected override void PreStart() => Self.Tell(new Look());

    // Not disposed: a preparation or a look may still hold its token when the worker stops.
    protected override void PostStop() => stopping.Cancel();

    private void Looking()
    {
        Receive<Look>(_ =>
        {
            var skip = skipUntil.Where(s => s.Value > DateTime.UtcNow).Select(s => s.Key).ToHashSet();
            NextSweep(skip, stopping.Token).PipeTo(Self, success: sweep => new Found(sweep), failure: _ => new Found(null));
        });
        Receive<Found>(found => found.Sweep is null, _ => Timers.StartSingleTimer("look", new Look(), options.Idle));
        Receive<Found>(found => Prepare(found.Sweep!));
        Receive<StopWorking>(_ => StopSelf(Sender));
    }

    private void Prepare(SweepDefinition sweep)
    {
        int g = ++generation;
        options.Output.WriteLine($"Working on sweep {sweep.Name} ({sweep.Trials.Count} trials) with {string.Join(", ", options.Devices)}, {options.Threads} thread(s).");
        Devices.UseThreads(options.Threads);
        var slots = TrialSlots.For(sweep, options.Threads, options.Devices.Count);
        var view = new PlainSweepView(options.Output);
        var runtime = TrialRuntimeOptions.ThroughManager(manager, sweep, selfAddress, options.DataDirectory, options.Devices, options.Precision, slots) with
        {
            PollInterval = TimeSpan.FromSeconds(1), ReplyTimeout = options.AskTimeout, NameSuffix = $"-{g}",
        };
        TrialRuntime.StartAsync(Context.System, dataLoader, sweep, runtime, new SynchronousProgress(view.Base), stopping.Token)
            .PipeTo(Self, success: runtime => new RuntimeUp(g, sweep, runtime), failure: e => new NotPrepared(g, sweep, e));
        Become(() => Preparing(g));
    }

    private void Preparing(int g)
    {
        Receive<RuntimeUp>(up => up.Generation == g, up =>
        {
            working = (up.Sweep, up.Runtime);
            up.Runtime.Done.PipeTo(Self, success: () => new RuntimeDone(g), failure: _ => new RuntimeDone(g));
            Become(() => Working(g));
        });
        Receive<NotPrepared>(failed => failed.Generation == g, failed =>
        {
            // One sweep this worker cannot prepare (a data folder it cannot see, a base that fails) must not take the
            // worker away from the others: it is said, reported to the manager, and left for a while.
            var e = failed.Error is AggregateException { InnerException: { } inner } ? inner : failed.Error;
            var name = failed.Sweep.Name;
            var reason = $"{e.GetType().Name}: {e.Message.Split('\n')[0]}";
            skipUntil[name] = DateTime.UtcNow + options.SkipUnprepared;
            options.Output.WriteLine($"Sweep {name} cannot be prepared on this worker ({reason}); going on with the others, trying it again in {options.SkipUnprepared.TotalMinutes:0} minutes.");
            log.LogWarning("Cannot prepare sweep {sweep}: {reason}", name, reason);
            manager.Tell(new ReportSweepUnprepared(name, selfAddress, reason));
            Become(Looking);
            Self.Tell(new Look());
        });
        Receive<StopWorking>(_ =>
        {
            // The base's preparation stops at its next step; the runtime, if it still comes up, is stopped at once.
            var requester = Sender;
            stopping.Cancel();
            Become(() =>
            {
                Receive<NotPrepared>(failed => failed.Generation == g, _ => StopSelf(requester));
                Receive<RuntimeUp>(up => up.Generation == g, up => StopRuntime(up.Sweep, up.Runtime, requester));
            });
        });
    }

    private void Working(int g)
    {
        Receive<RuntimeDone>(done => done.Generation == g, _ =>
        {
            var (sweep, runtime) = working!.Value;
            working = null;
            options.Output.WriteLine($"Sweep {sweep.Name}: nothing left for this worker.");
            // The runtime's evaluators are let go before the next sweep (or a stop) is taken on.
            Task.Run(runtime.Dispose).PipeTo(Self, success: () => new Look(), failure: _ => new Look());
            Become(() =>
            {
                Receive<Look>(_ =>
                {
                    Become(Looking);
                    Stash.UnstashAll();
                    Self.Tell(new Look());
                });
                Receive<StopWorking>(_ => Stash.Stash());
            });
        });
        Receive<StopWorking>(_ =>
        {
            var (sweep, runtime) = working!.Value;
            working = null;
            StopRuntime(sweep, runtime, Sender);
        });
    }

    /// <summary>
    /// Running trials checkpoint at their next step and stop (they resume elsewhere from that checkpoint, or from their last
    /// one if the coordinator did not acknowledge it within the drain's patience); then the worker stops.
    /// </summary>
    private void StopRuntime(SweepDefinition sweep, TrialRuntime runtime, IActorRef requester)
    {
        stopping.Cancel();
        var output = options.Output;
        Task.Run(async () =>
        {
            await runtime.Drain(options.DrainPatience);
            runtime.Dispose();
            output.WriteLine($"Stopped working on sweep {sweep.Name}.");
        }).PipeTo(Self, success: () => new Stopped(requester), failure: _ => new Stopped(requester));
        Become(() => Receive<Stopped>(stopped => StopSelf(stopped.Requester)));
    }

    private sealed record Stopped(IActorRef Requester);

    private void StopSelf(IActorRef requester)
    {
        requester.Tell(WorkerStopped.Instance);
        Context.Stop(Self);
    }

    /// <summary>The oldest submitted sweep that is not finished, or null (none, or the manager did not answer: it may be moving).</summary>
    private async Task<SweepDefinition?> NextSweep(IReadOnlySet<string> skip, CancellationToken stop)
    {
        try
        {
            var list = await SweepPages.AllAsync(get => manager.Ask<object>(get, options.AskTimeout, stop));
            foreach (var sweep in list.Sweeps.Where(s => !list.Quarantined.ContainsKey(s.SweepId) && !list.Cancelled.Contains(s.SweepId)))
            {
                if (skip.Contains(sweep.SweepId)) continue;
                var state = await manager.Ask<object>(new ToSweep(sweep.SweepId, GetSweepState.Instance), options.AskTimeout, stop);
                if (state is SweepState { Started: true, Finished: false }) return SweepDefinitionJson.Read(sweep.Definition);
            }
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException or InvalidCastException && !stop.IsCancellationRequested)
        {
            log.LogInformation("No answer from the sweep manager yet ({reason}); asking again", e.Message);
        }
        return null;
    }
}
