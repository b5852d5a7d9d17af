using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;

namespace Scale.Actors.Telemetry;

/// <summary>A trainer as operators see it: where it runs, and the trials it is training with their latest progress.</summary>
internal sealed record TrainerView(string Trainer, string Device, IReadOnlyList<TrainerTrial> Trials);

/// <summary>One trial on a trainer: its step, loss and speed when this process hears its progress, else the journal's last checkpoint.</summary>
internal sealed record TrainerTrial(string Trial, string Sweep, int Attempt, long? Step, long? TotalSteps, double? Loss, double? TokensPerSecond, double? EtaSeconds);

/// <summary>
/// What the operators' endpoint shows, from wherever the process gets it: a `scale run` from its own coordinator and
/// trainers, a cluster node from the cluster's sweep manager and Akka.Cluster's own membership.
/// </summary>
internal interface IOperatorView
{
    /// <summary>Null when the process can do its work (a member, its journal answering), else why not.</summary>
    Task<string?> NotReadyAsync();

    /// <summary>Every sweep the process knows, in submission order.</summary>
    Task<IReadOnlyList<SweepState>> SweepsAsync();

    /// <summary>Sweeps that do not run, with the reason.</summary>
    IReadOnlyDictionary<string, string> Quarantined { get; }

    /// <summary>Sweeps an operator cancelled (`scale cancel`).</summary>
    IReadOnlyCollection<string> Cancelled { get; }

    /// <summary>Sweeps some worker could not prepare, with the last worker and reason it reported.</summary>
    IReadOnlyDictionary<string, string> Unprepared { get; }

    ClusterMembership Membership { get; }

    /// <summary>The trainers with their running trials (of <paramref name="sweeps"/>).</summary>
    IReadOnlyList<TrainerView> Trainers(IReadOnlyList<SweepState> sweeps);

    /// <summary>Where a trial's logs are, when this process can read them (a shared data directory), else null.</summary>
    string? TrialDirectory(string sweep, string trial);
}

/// <summary>
/// Live progress of the trials training in this process, from the trainers' events (with each trial's steps per second
/// between its last two reports), and when each trial last started or checkpointed, from the sweep events heard here.
/// </summary>
internal sealed class ProgressBoard(Func<DateTime>? clock = null)
{
    private readonly Func<DateTime> now = clock ?? (() => DateTime.UtcNow);

    private sealed record Entry(TrialProgress Last, DateTime At, double StepsPerSecond);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Entry> latest = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DateTime> checkpoints = new();

    public void Observe(object message)
    {
        var at = now();
        if (message is TrialProgress p)
            latest.AddOrUpdate(p.TrialId, _ => new Entry(p, at, 0), (_, old) =>
            {
                double seconds = (at - old.At).TotalSeconds;
                return new Entry(p, at, seconds > 0 && p.Step > old.Last.Step ? (p.Step - old.Last.Step) / seconds : old.StepsPerSecond);
            });
        if (message is TrialStarted started) checkpoints[started.TrialId] = at;
        if (message is TrialCheckpointed checkpointed) checkpoints[checkpointed.TrialId] = at;
        var ended = message switch
        {
            TrialCompleted e => e.TrialId, TrialFailed e => e.TrialId, TrialRetrying e => e.TrialId, TrialRequeued e => e.TrialId, TrialPaused e => e.TrialId,
            TrialStopped e => e.TrialId,
            _ => null,
        };
        if (ended is null) return;
        latest.TryRemove(ended, out _);
        checkpoints.TryRemove(ended, out _);
    }

    public TrialProgress? Of(string trial) => latest.GetValueOrDefault(trial)?.Last;

    /// <summary>Training steps per second of a trial between its last two progress reports.</summary>
    public double? StepsPerSecond(string trial) => latest.GetValueOrDefault(trial)?.StepsPerSecond;

    /// <summary>Seconds since the trial's last checkpoint (or its start), when this process heard either.</summary>
    public double? CheckpointAge(string trial)
        => checkpoints.TryGetValue(trial, out var at) ? (now() - at).TotalSeconds : null;
}

/// <summary>The trainers of running trials as the journal names them ("{node}/{device}" or "{host}/{device}/{pid}").</summary>
internal static class TrainerViews
{
    public static IReadOnlyList<TrainerView> From(IReadOnlyList<SweepState> sweeps, ProgressBoard board, IEnumerable<(string Trainer, string Device)> idle)
    {
        var running = sweeps.SelectMany(s => s.Order.Select(id => s.Trials[id]).Where(t => t.Status == TrialStatus.Running && t.Trainer is not null)
                .Select(t => (Sweep: s.SweepId!, Trial: t)))
            .GroupBy(r => r.Trial.Trainer!)
            .ToDictionary(g => g.Key, g => g.Select(r =>
            {
                var p = board.Of(r.Trial.Spec.Id);
                return p is null
                    ? new TrainerTrial(r.Trial.Spec.Id, r.Sweep, r.Trial.Attempt, r.Trial.LastCheckpoint?.Step, null, null, null, null)
                    : new TrainerTrial(r.Trial.Spec.Id, r.Sweep, r.Trial.Attempt, p.Step, p.TotalSteps, p.Loss, p.TokensPerSecond, p.EtaSeconds);
            }).ToList());
        var views = idle.Select(t => new TrainerView(t.Trainer, t.Device, running.GetValueOrDefault(t.Trainer) ?? [])).ToList();
        foreach (var (trainer, trials) in running.Where(r => views.All(v => v.Trainer != r.Key)))
            views.Add(new TrainerView(trainer, DeviceOf(trainer), trials));
        return views;
    }

    /// <summary>The device part of a trainer id: "akka.tcp://scale@h:p/cpu" → cpu; "host/cuda:1/123" → cuda:1.</summary>
    public static string DeviceOf(string trainer)
    {
        var path = trainer.Contains("://", StringComparison.Ordinal) ? trainer[(trainer.IndexOf("://", StringComparison.Ordinal) + 3)..] : trainer;
        var parts = path.Split('/');
        return parts.Length >= 2 ? parts[1] : "?";
    }
}

