using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Scale.Actors.Sweeps;
using Scale.Actors.Telemetry;
using Scale.Actors.Trainers;

namespace Scale.Host.Sweeps;

/// <summary>
/// What this process knows of its sweep for operators: the sweep's state kept current from its events, and each
/// running trial's latest progress and checkpoint time; exposed as observable instruments of the "Scale" meter.
/// </summary>
internal sealed class SweepTelemetry : IDisposable
{
    private sealed record Progress(TrialProgress Last, DateTime At, double StepsPerSecond);

    private readonly Meter meter = new(SweepMetrics.MeterName);
    private readonly IReadOnlyList<(string Trainer, string Device)> trainers;
    private readonly ConcurrentDictionary<string, Progress> progress = new();
    private readonly ConcurrentDictionary<string, DateTime> checkpoints = new();
    private readonly Lock gate = new();
    private SweepState state;

    /// <param name="trainers">This process's trainers, each with its device.</param>
    public SweepTelemetry(SweepState initial, IReadOnlyList<(string Trainer, string Device)> trainers, Scale.Actors.Telemetry.ClusterMembership membership)
    {
        if (trainers.Count == 0) throw new ArgumentException("A sweep's telemetry needs at least one trainer.");
        (state, this.trainers, Membership) = (initial, trainers, membership);
        meter.CreateObservableGauge("scale_trials", () => Snapshot().Trials.Values.GroupBy(t => t.Status)
                .Select(g => new Measurement<int>(g.Count(), new KeyValuePair<string, object?>("state", g.Key.ToString().ToLowerInvariant()))),
            description: "Trials of the sweep by state.");
        // From the process's own Akka.Cluster state (one member on a single machine).
        meter.CreateObservableGauge("scale_cluster_members", () => Membership.Current.Members.GroupBy(m => m.Status)
                .Select(g => new Measurement<int>(g.Count(), new KeyValuePair<string, object?>("status", g.Key))),
            description: "Cluster members by status.");
        meter.CreateObservableGauge("scale_cluster_unreachable_members", () => Membership.Current.Unreachable.Count,
            description: "Members the others cannot reach.");
        meter.CreateObservableGauge("scale_trainer_tokens_per_second", () => Running().Select(p =>
                new Measurement<double>(p.Last.TokensPerSecond, Tags(p.Last.TrialId))),
            description: "Tokens per second of each running trial.");
        meter.CreateObservableGauge("scale_trainer_steps_per_second", () => Running().Select(p =>
                new Measurement<double>(p.StepsPerSecond, Tags(p.Last.TrialId))),
            description: "Training steps per second of each running trial.");
        meter.CreateObservableGauge("scale_trial_loss", () => Running().Select(p =>
                new Measurement<double>(p.Last.Loss, Tags(p.Last.TrialId))),
            description: "Loss of the latest step of each running trial.");
        meter.CreateObservableGauge("scale_trial_checkpoint_age_seconds", () => RunningIds().Select(id =>
                new Measurement<double>((DateTime.UtcNow - checkpoints.GetValueOrDefault(id, DateTime.UtcNow)).TotalSeconds,
                                        new KeyValuePair<string, object?>("trial", id))),
            description: "Seconds since each running trial's last checkpoint (or since it started).");
    }

    public string SweepId => Snapshot().SweepId ?? "";

    /// <summary>The process's view of its cluster's membership.</summary>
    public Scale.Actors.Telemetry.ClusterMembership Membership { get; }

    public SweepState Snapshot()
    {
        lock (gate) return state;
    }

    /// <summary>Starts again from <paramref name="current"/> (after changes made before the event feed was listening).</summary>
    public void Reset(SweepState current)
    {
        lock (gate) state = current;
    }

    /// <summary>Takes in a message from the event stream (trial progress or a sweep event).</summary>
    public void Observe(object message)
    {
        switch (message)
        {
            case TrialProgress p:
                var now = DateTime.UtcNow;
                progress.AddOrUpdate(p.TrialId, _ => new Progress(p, now, 0), (_, old) =>
                {
                    double seconds = (now - old.At).TotalSeconds;
                    return new Progress(p, now, seconds > 0 && p.Step > old.Last.Step ? (p.Step - old.Last.Step) / seconds : old.StepsPerSecond);
                });
                break;
            case ISweepEvent e:
                lock (gate) state = state.Apply(e);
                if (e is TrialStarted started) checkpoints[started.TrialId] = DateTime.UtcNow;
                if (e is TrialCheckpointed c) checkpoints[c.TrialId] = DateTime.UtcNow;
                if (e is TrialCompleted or TrialFailed or TrialRetrying or TrialRequeued or TrialPaused)
                {
                    var id = e switch
                    {
                        TrialCompleted x => x.TrialId, TrialFailed x => x.TrialId, TrialRetrying x => x.TrialId, TrialRequeued x => x.TrialId,
                        TrialPaused x => x.TrialId, _ => "",
                    };
                    progress.TryRemove(id, out _);
                    checkpoints.TryRemove(id, out _);
                }
                break;
        }
    }

    /// <summary>The running trials' latest progress, for the dashboard.</summary>
    public IReadOnlyList<TrialProgress> RunningProgress() => Running().Select(p => p.Last).ToList();

    /// <summary>This process's trainers and their devices.</summary>
    public IReadOnlyList<(string Trainer, string Device)> Trainers => trainers;

    /// <summary>The trainer a running trial is on (the journal's record; the first trainer until the start is observed).</summary>
    public string TrainerOf(string trial) => Snapshot().Trials.GetValueOrDefault(trial)?.Trainer ?? trainers[0].Trainer;

    private IEnumerable<string> RunningIds() => Snapshot().Trials.Values.Where(t => t.Status == TrialStatus.Running).Select(t => t.Spec.Id);

    private IEnumerable<Progress> Running() => RunningIds().Select(id => progress.GetValueOrDefault(id)).OfType<Progress>();

    private KeyValuePair<string, object?>[] Tags(string trial) => [new("trainer", TrainerOf(trial)), new("trial", trial)];

    public void Dispose() => meter.Dispose();
}
