using Akka.Actor;
using Akka.Hosting;
using Scale.Actors.Data;
using Scale.Actors.Evaluation;
using Scale.Actors.Sweeps;
using Scale.Model.Experiments;

namespace Scale.Actors.Trainers;

/// <summary>How a node runs a sweep's trials: where they come from, on which devices, with how many threads.</summary>
internal sealed record TrialRuntimeOptions
{
    /// <summary>The sweep's coordinator (a local persistent actor, or the cluster's sweep manager with <see cref="Envelope"/>).</summary>
    public required IActorRef Coordinator { get; init; }
    /// <summary>Journal, cached bases and checkpoints.</summary>
    public required string DataDirectory { get; init; }
    /// <summary>One trainer per device; each gets <see cref="SlotsPerDevice"/> concurrent trials.</summary>
    public IReadOnlyList<string> Devices { get; init; } = ["cpu"];
    public int SlotsPerDevice { get; init; } = 1;
    /// <summary>Autocast type of the trainers' linear maps (bf16 on CUDA), or null for fp32.</summary>
    public TorchSharp.torch.ScalarType? Precision { get; init; }
    /// <summary>libtorch threads of each running trial and of the evaluator.</summary>
    public int ThreadsPerTrial { get; init; } = 1;
    /// <summary>A trainer's id from its device: unique among the sweep's trainers (the coordinator hands trials to ids).</summary>
    public required Func<string, string> TrainerId { get; init; }
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan? ReplyTimeout { get; init; }
    /// <summary>Wraps each command to the coordinator (the cluster's manager takes them addressed to a sweep).</summary>
    public Func<ISweepCommand, object>? Envelope { get; init; }
    /// <summary>Distinguishes the actors of successive runtimes in one actor system (a worker works on one sweep after another).</summary>
    public string NameSuffix { get; init; } = "";

    /// <summary>A trainer's id: the node's address and the device (the operators' view finds a node's own trainers by it).</summary>
    public static string TrainerIdOf(string nodeAddress, string device) => $"{nodeAddress}/{device}";

    /// <summary>
    /// A sweep's runtime on a node, as `scale run` and `scale worker` start it: its trainers, one per device with the
    /// node's <paramref name="slots"/>, address the sweep through the sweep manager and are named by the node's address.
    /// </summary>
    public static TrialRuntimeOptions ThroughManager(IActorRef manager, SweepDefinition sweep, string nodeAddress, string dataDirectory,
                                                     IReadOnlyList<string> devices, TorchSharp.torch.ScalarType? precision, TrialSlots slots)
        => new()
        {
            Coordinator = manager, Envelope = command => new Cluster.ToSweep(sweep.Name, command), DataDirectory = dataDirectory,
            Devices = devices, Precision = precision, SlotsPerDevice = slots.PerDevice, ThreadsPerTrial = slots.ThreadsPerTrial,
            TrainerId = device => TrainerIdOf(nodeAddress, device),
        };
}

/// <summary>
/// The one runtime composition for a sweep's trials on a node, used by `scale run` and `scale worker` alike: the
/// base prepared under the data directory's lock (one process trains it, the others wait and load the cached copy),
/// the new data registered with the node's data loader, an evaluator, and one trainer per device pulling trials from
/// the coordinator. It ends when every trainer has stopped (the sweep is finished), or when <see cref="Stop"/> is called.
/// </summary>
internal sealed class TrialRuntime : IDisposable
{
    private readonly ActorSystem system;
    private readonly IReadOnlyList<IActorRef> evaluators;
    private readonly IReadOnlyList<SweepTrialExecutor> executors;

    /// <summary>The executors, one per device (their lock-step groups, for figures and tests).</summary>
    public IReadOnlyList<SweepTrialExecutor> Executors => executors;

    private TrialRuntime(ActorSystem system, ExperimentTask task, IReadOnlyList<IActorRef> evaluators, IReadOnlyList<IActorRef> trainers,
                         IReadOnlyList<SweepTrialExecutor> executors)
    {
        (this.system, Task, this.evaluators, Trainers, this.executors) = (system, task, evaluators, trainers, executors);
        Done = System.Threading.Tasks.Task.WhenAll(trainers.Select(t => t.WatchAsync()));
    }

    /// <summary>The resident base, its tokenizer and the trial runner over the new data.</summary>
    public ExperimentTask Task { get; }
    public IReadOnlyList<IActorRef> Trainers { get; }
    /// <summary>Completes when every trainer has stopped.</summary>
    public Task Done { get; }

    /// <summary>
    /// Starts one trainer per device of <paramref name="options"/>, each with an evaluator and the frozen base resident on
    /// its device (copied there once, shared by the device's trials; every CPU trainer shares the CPU's base).
    /// </summary>
    public static async Task<TrialRuntime> StartAsync(ActorSystem system, IActorRef dataLoader, SweepDefinition sweep, TrialRuntimeOptions options,
                                                      IProgress<ExperimentProgress>? progress, CancellationToken cancellation)
    {
        var placement = options.Devices.Select(name => (Name: name, Device: Scale.Model.Devices.Parse(name))).ToList();
        var task = await System.Threading.Tasks.Task.Run(() => BaseLock.Prepare(sweep.Experiment, options.DataDirectory, progress, cancellation), cancellation);
        try
        {
            string dataset = "new" + options.NameSuffix;
            dataLoader.Tell(new RegisterDataset(dataset, task.Runner.TrainData));
            var trialsRoot = Path.Combine(SweepPaths.SweepDirectory(options.DataDirectory, sweep.Name), "trials");
            var evaluators = new List<IActorRef>();
            var trainers = new List<IActorRef>();
            var executors = new List<SweepTrialExecutor>();
            foreach (var (name, device) in placement)
            {
                var runner = await System.Threading.Tasks.Task.Run(() => task.Runner.On(device, options.Precision), cancellation);
                var actorName = name.Replace(':', '-');
                var evaluator = system.ActorOf(Evaluator.Props(runner, options.ThreadsPerTrial), $"evaluator{options.NameSuffix}-{actorName}");
                evaluators.Add(evaluator);
                var executor = new SweepTrialExecutor(sweep, runner, trialsRoot, dataLoader, dataset, evaluator, system.EventStream, options.ThreadsPerTrial,
                    Math.Min(options.ThreadsPerTrial * options.SlotsPerDevice, Environment.ProcessorCount));
                executors.Add(executor);
                trainers.Add(system.ActorOf(
                    Trainer.Props(options.Coordinator, options.TrainerId(name), executor, options.PollInterval, options.SlotsPerDevice,
                                  options.ReplyTimeout, options.Envelope),
                    $"trainer{options.NameSuffix}-{actorName}"));
            }
            return new TrialRuntime(system, task, evaluators, trainers, executors);
        }
        catch
        {
            task.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Stops gracefully: each trainer asks for no more work, its running trials write a checkpoint of the steps since their
    /// last one and stop, and it stops once the coordinator has acknowledged every report (those checkpoints included).
    /// Trainers still draining after <paramref name="patience"/> (the coordinator does not answer) are stopped as by
    /// <see cref="Stop"/>: their trials resume from their last acknowledged checkpoint.
    /// </summary>
    public async Task Drain(TimeSpan patience)
    {
        foreach (var trainer in Trainers) trainer.Tell(Trainer.Drain.Instance);
        await System.Threading.Tasks.Task.WhenAny(Done, System.Threading.Tasks.Task.Delay(patience));
        await Stop();
    }

    /// <summary>
    /// Stops the trainers (running trials stop at their next step and resume from their last checkpoint) and waits for
    /// them and for their trials' threads to end.
    /// </summary>
    public async Task Stop()
    {
        foreach (var trainer in Trainers) system.Stop(trainer);
        await Done;
        await TrialsEnded(TimeSpan.FromMinutes(2));
    }

    private async Task TrialsEnded(TimeSpan patience)
    {
        var all = System.Threading.Tasks.Task.WhenAll(executors.Select(e => e.Idle));
        await System.Threading.Tasks.Task.WhenAny(all, System.Threading.Tasks.Task.Delay(patience));
    }

    /// <summary>Frees the resident base, once no trial uses it any more (a trial's thread may still be ending its step).</summary>
    public void Dispose()
    {
        if (!system.WhenTerminated.IsCompleted)
            foreach (var evaluator in evaluators) system.Stop(evaluator);
        TrialsEnded(TimeSpan.FromMinutes(2)).GetAwaiter().GetResult();
        Task.Dispose();
    }
}

/// <summary>
/// How many of a sweep's trials a node runs at once and with how many threads each — one policy for `scale run` and
/// `scale worker`: up to the sweep's max-concurrent within the node's thread budget (a lock-step group needs no thread
/// per member), split evenly between the node's devices, the budget split evenly between the running trials.
/// </summary>
internal readonly record struct TrialSlots(int PerDevice, int ThreadsPerTrial)
{
    public static TrialSlots For(SweepDefinition sweep, int threadBudget, int devices)
    {
        if (threadBudget < 1 || devices < 1) throw new ArgumentException($"a node needs at least one thread and one device, got {threadBudget} and {devices}");
        int perDevice = Math.Max(1, sweep.ConcurrentTrials(threadBudget) / devices);
        return new TrialSlots(perDevice, Math.Max(1, threadBudget / (perDevice * devices)));
    }
}

/// <summary>
/// Where a sweep's files live under a data directory. Sweep names and trial ids become path segments, so each is
/// checked to be one safe segment (no separator, no "." or "..", no absolute path) and the path it makes to stay
/// inside the data directory: a name from a submitted sweep or a journal can never reach outside it.
/// </summary>
internal static partial class SweepPaths
{
    /// <summary>The sweeps that have a directory under <paramref name="dataDirectory"/>, by name.</summary>
    public static IReadOnlyList<string> KnownSweeps(string dataDirectory)
    {
        var root = Path.Combine(dataDirectory, "sweeps");
        return Directory.Exists(root) ? Directory.GetDirectories(root).Select(Path.GetFileName).OfType<string>().Order().ToList() : [];
    }

    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.@:=-]{0,127}$")]
    private static partial System.Text.RegularExpressions.Regex SegmentPattern();

    public static string DatabaseFile(string dataDirectory) => Path.Combine(dataDirectory, "sweeps.db");

    public static string SweepDirectory(string dataDirectory, string sweep)
        => Inside(Path.Combine(dataDirectory, "sweeps"), Segment(sweep, "sweep name"));

    /// <summary>Where a trial keeps its checkpoints and log: {sweep}/trials/{trial}.</summary>
    public static string TrialDirectory(string trialsRoot, string trial) => Inside(trialsRoot, Segment(trial, "trial id"));

    /// <summary><paramref name="value"/> if it is one safe path segment; otherwise an ArgumentException naming <paramref name="what"/>.</summary>
    public static string Segment(string value, string what)
        => SegmentPattern().IsMatch(value) && value.Trim('.').Length > 0
            ? value
            : throw new ArgumentException($"{what} '{value}' is not a safe name: use letters, digits and _ . @ : = - (at most 128, starting with a letter or digit).");

    /// <summary>
    /// Whether <paramref name="path"/> lies inside <paramref name="directory"/> once both are made absolute and every symbolic
    /// link on them is resolved (a link inside the directory that points out of it does not count as inside).
    /// </summary>
    public static bool Contains(string directory, string path)
    {
        var root = Resolve(directory).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        return Resolve(path).StartsWith(root, StringComparison.Ordinal);
    }

    /// <summary>Whether <paramref name="path"/> is <paramref name="directory"/> or lies inside it (see <see cref="Contains"/>).</summary>
    public static bool IsOrContains(string directory, string path)
        => Contains(directory, path) || Resolve(directory).TrimEnd(Path.DirectorySeparatorChar) == Resolve(path).TrimEnd(Path.DirectorySeparatorChar);

    /// <summary>The absolute path with every symbolic link on it resolved, component by component (what need not exist is kept as it is).</summary>
    private static string Resolve(string path, int links = 0)
    {
        var full = Path.GetFullPath(path);
        var current = Path.GetPathRoot(full)!;
        foreach (var part in full[current.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            current = Path.Combine(current, part);
            var info = new FileInfo(current);
            if (info.LinkTarget is { } target)
            {
                if (links >= 40) throw new IOException($"{path}: too many levels of symbolic links.");
                current = Resolve(Path.IsPathRooted(target) ? target : Path.Combine(Path.GetDirectoryName(current)!, target), links + 1);
            }
        }
        return current;
    }

    private static string Inside(string root, string segment)
    {
        var full = Path.GetFullPath(Path.Combine(root, segment));
        var rootFull = Path.GetFullPath(root).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        return full.StartsWith(rootFull, StringComparison.Ordinal)
            ? Path.Combine(root, segment)
            : throw new ArgumentException($"'{segment}' would lead outside {root}.");
    }
}

/// <summary>
/// Several processes (or nodes sharing the data directory) that need the same base: one prepares it while the
/// others wait on a lock file, then they load the cached copy. Every path that prepares a base goes through here.
/// </summary>
internal static class BaseLock
{
    public static ExperimentTask Prepare(ExperimentSpec spec, string dataDirectory, IProgress<ExperimentProgress>? progress, CancellationToken cancellation)
    {
        var bases = Path.Combine(dataDirectory, "bases");
        SweepLock? held;
        bool told = false;
        while ((held = SweepLock.TryAcquire(bases, "prepare.lock")) is null)
        {
            if (!told) progress?.Report(new("pretrain", "base", 0, 0, 0, 0, "another process is preparing a base in this data directory; waiting for it"));
            told = true;
            cancellation.WaitHandle.WaitOne(TimeSpan.FromSeconds(1));
            cancellation.ThrowIfCancellationRequested();
        }
        using (held) return TwoPhaseExperiment.Prepare(spec, dataDirectory, progress, cancellation);
    }
}

/// <summary>Akka.Hosting wiring of the node-level parts every `scale` process that trains needs.</summary>
internal static class TrialRuntimeHosting
{
    /// <summary>Registers the node's data loader (in the actor registry under <see cref="DataLoader"/>).</summary>
    public static AkkaConfigurationBuilder WithDataLoader(this AkkaConfigurationBuilder builder)
        => builder.WithActors((system, registry, _) => registry.Register<DataLoader>(system.ActorOf(DataLoader.Props(), "data-loader")));
}
