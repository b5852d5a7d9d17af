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

    public async Task RunAsync(CancellationToken stop)
    {
        node.System.ActorOf(Akka.Actor.Props.Create(() => new WorkerProgress(new PlainSweepView(output))), "progress");
        var dataLoader = node.System.ActorOf(DataLoader.Props(), "data-loader");
        var ended = Task.WhenAny(node.WhenTerminated, Task.Delay(Timeout.Infinite, stop));
        while (!stop.IsCancellationRequested && !node.WhenTerminated.IsCompleted)
        {
            var next = await NextSweep(stop);
            if (next is null)
            {
                await Task.WhenAny(ended, Task.Delay(Idle, CancellationToken.None));
                continue;
            }
            await WorkOn(next, dataLoader, ended, stop);
        }
    }

    /// <summary>The oldest submitted sweep that is not finished, or null (none, or the manager did not answer: it may be moving).</summary>
    private async Task<SweepDefinition?> NextSweep(CancellationToken stop)
    {
        try
        {
            var list = (SweepList)await node.Manager.Ask<object>(GetSweeps.Instance, AskTimeout, stop);
            foreach (var sweep in list.Sweeps)
            {
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
        using var task = await Task.Run(() => BaseLock.Prepare(sweep.Experiment, dataDirectory, new SynchronousProgress(view.Base), stop), stop);
        string dataset = $"new-{g}";
        dataLoader.Tell(new RegisterDataset(dataset, task.Runner.TrainData));
        var evaluator = node.System.ActorOf(Evaluator.Props(task.Runner, threads), $"evaluator-{g}");
        var executor = new SweepTrialExecutor(sweep, task.Runner, Path.Combine(SweepSystem.SweepDirectory(dataDirectory, sweep.Name), "trials"),
                                              dataLoader, dataset, evaluator, node.System.EventStream, Math.Max(1, threads / devices.Count));
        var trainers = devices.Select(device => node.System.ActorOf(
            Trainer.Props(node.Manager, $"{node.SelfAddress}/{device}", executor, TimeSpan.FromSeconds(1), slots: 1,
                          replyTimeout: AskTimeout, envelope: command => new ToSweep(sweep.Name, command)),
            $"trainer-{g}-{device.Replace(':', '-')}")).ToList();
        var done = Task.WhenAll(trainers.Select(t => t.WatchAsync()));
        await Task.WhenAny(done, ended);
        if (!done.IsCompleted && !node.WhenTerminated.IsCompleted)
        {
            foreach (var trainer in trainers) node.System.Stop(trainer);   // running trials stop at their next step
            await done;
        }
        if (!node.WhenTerminated.IsCompleted) node.System.Stop(evaluator);
        output.WriteLine(done.IsCompleted && !stop.IsCancellationRequested ? $"Sweep {sweep.Name}: nothing left for this worker." : $"Stopped working on sweep {sweep.Name}.");
    }
}

/// <summary>
/// Several processes (or nodes sharing the data directory) that need the same base: one prepares it while the
/// others wait on a lock file, then they load the cached copy.
/// </summary>
internal static class BaseLock
{
    public static ExperimentTask Prepare(ExperimentSpec spec, string dataDirectory, IProgress<ExperimentProgress> progress, CancellationToken cancellation)
    {
        var bases = Path.Combine(dataDirectory, "bases");
        SweepLock? held;
        bool told = false;
        while ((held = SweepLock.TryAcquire(bases, "prepare.lock")) is null)
        {
            if (!told) progress.Report(new("pretrain", "base", 0, 0, 0, 0, "another process is preparing a base in this data directory; waiting for it"));
            told = true;
            cancellation.WaitHandle.WaitOne(TimeSpan.FromSeconds(1));
            cancellation.ThrowIfCancellationRequested();
        }
        using (held) return TwoPhaseExperiment.Prepare(spec, dataDirectory, progress, cancellation);
    }
}
