using Akka.Actor;
using Microsoft.Extensions.Logging;
using Scale.Actors.Cluster;
using Scale.Actors.Data;
using Scale.Actors.Evaluation;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Host.Sweeps;
using Scale.Model;
using Scale.Model.Experiments;

namespace Scale.Host.Cluster;

/// <summary>Prints this worker's trial progress and notices (they are published on its own event stream).</summary>
internal sealed class WorkerProgress : ReceiveActor
{
    public WorkerProgress(ISweepView view)
    {
        Receive<TrialProgress>(view.Trial);
        Receive<TrialNotice>(view.Notice);
    }

    protected override void PreStart()
    {
        Context.System.EventStream.Subscribe(Self, typeof(TrialProgress));
        Context.System.EventStream.Subscribe(Self, typeof(TrialNotice));
    }
}

/// <summary>
/// What a worker does while it is a member: it looks for a submitted sweep that is not finished, prepares that
/// sweep's base in the shared data directory (one node trains it, the others wait and load it), and runs one
/// trainer per device that pulls the sweep's trials from the coordinator until the sweep is finished; then it
/// looks again. Checkpoints go under the shared data directory, where any other worker can resume them.
/// </summary>
internal sealed class WorkerLoop(ClusterNode node, string dataDirectory, IReadOnlyList<string> devices, int threads, TextWriter output)
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan Idle = TimeSpan.FromSeconds(2);
    private readonly ILogger log = node.Logs.CreateLogger("Scale.Worker");
    private int generation;

    /// <summary>Autocast type of this worker's trainers (bf16 on CUDA), or null for fp32.</summary>
    public TorchSharp.torch.ScalarType? Precision { get; init; }

    public async Task RunAsync(CancellationToken stop)
    {
        node.System.ActorOf(Akka.Actor.Props.Create(() => new WorkerProgress(new PlainSweepView(output))), "progress");
        var dataLoader = node.DataLoader;
        var ended = Task.WhenAny(node.WhenTerminated, Task.Delay(Timeout.Infinite, stop));
        while (!stop.IsCancellationRequested && !node.WhenTerminated.IsCompleted)
        {
            var next = await NextSweep(stop);
            if (next is null)
            {
                await Task.WhenAny(ended, Task.Delay(Idle, CancellationToken.None));
                continue;
            }
            try
            {
                await WorkOn(next, dataLoader, ended, stop);
            }
            catch (Exception e) when (!stop.IsCancellationRequested && !node.WhenTerminated.IsCompleted && e is not OperationCanceledException)
            {
                // One sweep this worker cannot prepare (a data folder it cannot see, a base that fails) must not take the
                // worker away from the others: it is said, reported to the manager, and left for a while.
                var reason = $"{e.GetType().Name}: {e.Message.Split('\n')[0]}";
                skipUntil[next.Name] = DateTime.UtcNow + SkipUnprepared;
                output.WriteLine($"Sweep {next.Name} cannot be prepared on this worker ({reason}); going on with the others, trying it again in {SkipUnprepared.TotalMinutes:0} minutes.");
                log.LogWarning("Cannot prepare sweep {sweep}: {reason}", next.Name, reason);
                node.Manager.Tell(new ReportSweepUnprepared(next.Name, node.SelfAddress, reason));
            }
        }
    }

    /// <summary>How long a sweep this worker could not prepare is left before it tries again (the cause may be fixed meanwhile).</summary>
    public static readonly TimeSpan SkipUnprepared = TimeSpan.FromMinutes(5);

    private readonly Dictionary<string, DateTime> skipUntil = new();

    /// <summary>The oldest submitted sweep that is not finished, or null (none, or the manager did not answer: it may be moving).</summary>
    private async Task<SweepDefinition?> NextSweep(CancellationToken stop)
    {
        try
        {
            var list = await SweepPages.AllAsync(get => node.Manager.Ask<object>(get, AskTimeout, stop));
            foreach (var sweep in list.Sweeps.Where(s => !list.Quarantined.ContainsKey(s.SweepId) && !list.Cancelled.Contains(s.SweepId)))
            {
                if (skipUntil.TryGetValue(sweep.SweepId, out var until) && until > DateTime.UtcNow) continue;
                var state = await node.Manager.Ask<object>(new ToSweep(sweep.SweepId, GetSweepState.Instance), AskTimeout, stop);
                if (state is SweepState { Started: true, Finished: false }) return SweepDefinitionJson.Read(sweep.Definition);
            }
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException or InvalidCastException && !stop.IsCancellationRequested)
        {
            log.LogInformation("No answer from the sweep manager yet ({reason}); asking again", e.Message);
        }
        return null;
    }

    private async Task WorkOn(SweepDefinition sweep, IActorRef dataLoader, Task ended, CancellationToken stop)
    {
        int g = ++generation;
        output.WriteLine($"Working on sweep {sweep.Name} ({sweep.Trials.Count} trials) with {string.Join(", ", devices)}, {threads} thread(s).");
        var view = new PlainSweepView(output);
        Devices.UseThreads(threads);
        var slots = TrialSlots.For(sweep, threads, devices.Count);
        using var runtime = await TrialRuntime.StartAsync(node.System, dataLoader, sweep, new TrialRuntimeOptions
        {
            Coordinator = node.Manager, DataDirectory = dataDirectory, Devices = devices, Precision = Precision, SlotsPerDevice = slots.PerDevice,
            ThreadsPerTrial = slots.ThreadsPerTrial,
            TrainerId = device => $"{node.SelfAddress}/{device}", PollInterval = TimeSpan.FromSeconds(1), ReplyTimeout = AskTimeout,
            Envelope = command => new ToSweep(sweep.Name, command), NameSuffix = $"-{g}",
        }, new SynchronousProgress(view.Base), stop);
        var done = runtime.Done;
        await Task.WhenAny(done, ended);
        if (!done.IsCompleted && !node.WhenTerminated.IsCompleted) await runtime.Stop();   // running trials stop at their next step
        output.WriteLine(done.IsCompleted && !stop.IsCancellationRequested ? $"Sweep {sweep.Name}: nothing left for this worker." : $"Stopped working on sweep {sweep.Name}.");
    }
}

