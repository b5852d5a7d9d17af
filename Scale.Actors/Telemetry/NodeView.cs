using System.Diagnostics.Metrics;
using Akka.Actor;
using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;

namespace Scale.Actors.Telemetry;

/// <summary>
/// What a node shows operators — a seed, a worker, or a local run (a cluster of one): the cluster from Akka.Cluster's
/// own membership and the sweep manager (every sweep with its trials, the quarantined ones with the reason), refreshed
/// in the background every 2 s and at once when a sweep event is written on this node, so that a request never waits
/// on the cluster; this node's trainers with the live progress of their trials; and Prometheus gauges of all of it.
/// </summary>
internal sealed class NodeView : IOperatorView, IAsyncDisposable
{
    private static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan Every = TimeSpan.FromSeconds(2), AskTimeout = TimeSpan.FromSeconds(10), Stale = TimeSpan.FromSeconds(30);

    private readonly IActorRef manager;
    private readonly string selfAddress;
    private readonly string dataDirectory;
    private readonly bool seed;
    private readonly IReadOnlyList<(string Trainer, string Device)> ownTrainers;
    private readonly ProgressBoard board = new();
    private readonly CancellationTokenSource stop = new();
    private readonly Task refreshing;
    private readonly Meter meter = new(SweepMetrics.MeterName);
    private volatile Snapshot snapshot = new([], new Dictionary<string, string>(), null, DateTime.MinValue);

    private sealed record Snapshot(IReadOnlyList<SweepState> Sweeps, IReadOnlyDictionary<string, string> Quarantined, string? Error, DateTime At)
    {
        public IReadOnlyCollection<string> Cancelled { get; init; } = [];
        public IReadOnlyDictionary<string, string> Unprepared { get; init; } = new Dictionary<string, string>();
    }

    /// <param name="manager">The sweep manager (a node's singleton proxy).</param>
    /// <param name="selfAddress">This node's address: its trainers are "{address}/{device}".</param>
    public NodeView(ActorSystem system, IActorRef manager, string selfAddress, ClusterMembership membership, string dataDirectory, bool seed, IReadOnlyList<string> devices)
    {
        (this.manager, this.selfAddress, this.dataDirectory, this.seed) = (manager, selfAddress, dataDirectory, seed);
        ownTrainers = devices.Select(d => (TrialRuntimeOptions.TrainerIdOf(selfAddress, d), d)).ToList();
        Membership = membership;
        EventTap.Start(system, "endpoint-progress", message =>
        {
            board.Observe(message);
            if (message is ISweepEvent) Changed();
        }, typeof(TrialProgress), typeof(ISweepEvent));
        refreshing = Task.Run(RefreshLoop);
        // Cluster-wide series come from one node only, the one the sweep manager runs on (the oldest seed), so that a sum
        // over every scraped node counts each member and trial once; every state of every sweep is a series, zero included.
        meter.CreateObservableGauge("scale_cluster_members", () => ClusterWide(Membership.Current.Members.GroupBy(m => m.Status)
                .Select(g => new Measurement<int>(g.Count(), new KeyValuePair<string, object?>("status", g.Key)))),
            description: "Cluster members by status (exported by the node the sweep manager runs on).");
        meter.CreateObservableGauge("scale_cluster_unreachable_members", () => Membership.Current.Unreachable.Count,
            description: "Members this node cannot reach.");
        meter.CreateObservableGauge("scale_trials", () => ClusterWide(snapshot.Sweeps.SelectMany(s => Enum.GetValues<TrialStatus>()
                .Select(state => new Measurement<int>(s.Trials.Values.Count(t => t.Status == state), new KeyValuePair<string, object?>("sweep", s.SweepId),
                                                      new KeyValuePair<string, object?>("state", state.ToString().ToLowerInvariant()))))),
            description: "Trials of every sweep of the cluster by state (exported by the node the sweep manager runs on).");
        meter.CreateObservableCounter("scale_trial_attempts_failed", () => ClusterWide(snapshot.Sweeps.Select(s => new Measurement<int>(
                s.Trials.Values.Sum(t => t.FailedAttempts), new KeyValuePair<string, object?>("sweep", s.SweepId)))),
            description: "Failed attempts of the trials of every sweep, from the journal (exported by the node the sweep manager runs on).");
        meter.CreateObservableGauge("scale_sweeps_quarantined", () => ClusterWide([new Measurement<int>(snapshot.Quarantined.Count)]),
            description: "Sweeps that do not run, their journal unrecoverable (exported by the node the sweep manager runs on).");
        meter.CreateObservableGauge("scale_trainer_tokens_per_second", () => Trainers(snapshot.Sweeps)
                .SelectMany(t => t.Trials.Where(p => p.TokensPerSecond is not null).Select(p => new Measurement<double>(p.TokensPerSecond!.Value,
                    new KeyValuePair<string, object?>("trainer", t.Trainer), new KeyValuePair<string, object?>("trial", p.Trial)))),
            description: "Tokens per second of each trial training on this node.");
        meter.CreateObservableGauge("scale_trainer_steps_per_second", () => Running(t => board.StepsPerSecond(t.Trial)),
            description: "Training steps per second of each trial training on this node.");
        meter.CreateObservableGauge("scale_trial_loss", () => Running(t => t.Loss),
            description: "Loss of the latest step of each trial training on this node.");
        meter.CreateObservableGauge("scale_trial_checkpoint_age_seconds", () => snapshot.Sweeps
                .SelectMany(s => s.Trials.Values.Where(t => t.Status == TrialStatus.Running))
                .Select(t => (Trial: t.Spec.Id, Age: board.CheckpointAge(t.Spec.Id))).Where(a => a.Age is not null)
                .Select(a => new Measurement<double>(a.Age!.Value, new KeyValuePair<string, object?>("trial", a.Trial))),
            description: "Seconds since each running trial's last checkpoint (or its start), for the sweeps whose coordinator runs on this node.");
    }

    /// <summary><paramref name="measurements"/> where this node is the one the sweep manager runs on (the oldest seed); none elsewhere.</summary>
    private IEnumerable<Measurement<int>> ClusterWide(IEnumerable<Measurement<int>> measurements)
        => Membership.Current.OldestSeed == selfAddress ? measurements : [];

    /// <summary>A measurement per trial training on this node, tagged with its trainer and trial.</summary>
    private IEnumerable<Measurement<double>> Running(Func<TrainerTrial, double?> value)
        => Trainers(snapshot.Sweeps).SelectMany(t => t.Trials.Select(p => (Value: value(p), Trainer: t.Trainer, p.Trial)))
            .Where(m => m.Value is not null)
            .Select(m => new Measurement<double>(m.Value!.Value, new KeyValuePair<string, object?>("trainer", m.Trainer), new KeyValuePair<string, object?>("trial", m.Trial)));

    private TaskCompletionSource changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>A sweep changed on this node: the next refresh comes now rather than at the next period.</summary>
    private void Changed() => Volatile.Read(ref changed).TrySetResult();

    public ClusterMembership Membership { get; }

    public IReadOnlyDictionary<string, string> Quarantined => snapshot.Quarantined;

    public IReadOnlyCollection<string> Cancelled => snapshot.Cancelled;

    public IReadOnlyDictionary<string, string> Unprepared => snapshot.Unprepared;

    public Task<IReadOnlyList<SweepState>> SweepsAsync() => Task.FromResult(snapshot.Sweeps);

    public Task<string?> NotReadyAsync()
    {
        var self = Membership.Current.Members.FirstOrDefault(m => m.Address == selfAddress);
        if (self is null || self.Status != "up") return Task.FromResult<string?>($"this node is not an Up member of the cluster ({self?.Status ?? "not a member"})");
        var last = snapshot;
        // A seed is ready when the sweep manager, and so the journal, answers; a worker once it is a member.
        if (seed && (last.Error is not null || DateTime.UtcNow - last.At > Stale))
            return Task.FromResult<string?>($"the sweep manager (and its journal) does not answer{(last.Error is null ? "" : $": {last.Error}")}");
        return Task.FromResult<string?>(null);
    }

    public IReadOnlyList<TrainerView> Trainers(IReadOnlyList<SweepState> sweeps) => TrainerViews.From(sweeps, board, ownTrainers);

    public string? TrialDirectory(string sweep, string trial)
    {
        try
        {
            return SweepPaths.TrialDirectory(Path.Combine(SweepPaths.SweepDirectory(dataDirectory, sweep), "trials"), trial);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    private async Task RefreshLoop()
    {
        while (!stop.IsCancellationRequested)
        {
            Volatile.Write(ref changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));   // changes from here on refresh again
            try
            {
                var list = await SweepPages.AllAsync(get => manager.Ask<object>(get, AskTimeout, stop.Token));
                var states = new List<SweepState>();
                foreach (var sweep in list.Sweeps.Where(s => !list.Quarantined.ContainsKey(s.SweepId)))
                    if (await manager.Ask<object>(new ToSweep(sweep.SweepId, GetSweepState.Instance), AskTimeout, stop.Token) is SweepState state)
                        states.Add(state);
                snapshot = new Snapshot(states, list.Quarantined, null, DateTime.UtcNow) { Cancelled = list.Cancelled.ToHashSet(), Unprepared = list.Unprepared };
            }
            catch (Exception e) when (!stop.IsCancellationRequested)
            {
                snapshot = snapshot with { Error = e.Message };
            }
            catch (OperationCanceledException)
            {
                return;
            }
            try
            {
                await Task.WhenAny(Task.Delay(Every, stop.Token), Volatile.Read(ref changed).Task);
                stop.Token.ThrowIfCancellationRequested();
                await Task.Delay(Debounce, stop.Token);   // a burst of events is one refresh
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        stop.Cancel();
        await refreshing;
        meter.Dispose();
        stop.Dispose();
    }
}
