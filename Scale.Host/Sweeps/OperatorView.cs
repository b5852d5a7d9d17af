using Scale.Actors.Sweeps;
using Scale.Actors.Telemetry;
using Scale.Actors.Trainers;

namespace Scale.Host.Sweeps;

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

/// <summary>Live progress of the trials training in this process, from the trainers' events.</summary>
internal sealed class ProgressBoard
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, TrialProgress> latest = new();

    public void Observe(object message)
    {
        if (message is TrialProgress p) latest[p.TrialId] = p;
        var ended = message switch
        {
            TrialCompleted e => e.TrialId, TrialFailed e => e.TrialId, TrialRetrying e => e.TrialId, TrialRequeued e => e.TrialId, TrialPaused e => e.TrialId,
            _ => null,
        };
        if (ended is not null) latest.TryRemove(ended, out _);
    }

    public TrialProgress? Of(string trial) => latest.GetValueOrDefault(trial);
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

/// <summary>A `scale run`: one sweep, its coordinator and trainers in this process.</summary>
internal sealed class LocalRunView(SweepSystem system, SweepTelemetry telemetry, string sweepDirectory) : IOperatorView
{
    public async Task<string?> NotReadyAsync()
    {
        try
        {
            var ask = system.StateAsync();
            return await Task.WhenAny(ask, Task.Delay(TimeSpan.FromSeconds(5))) == ask && (await ask).Started ? null : "the sweep's journal does not answer";
        }
        catch (Exception e)
        {
            return e.Message;
        }
    }

    public Task<IReadOnlyList<SweepState>> SweepsAsync() => Task.FromResult<IReadOnlyList<SweepState>>([telemetry.Snapshot()]);

    public IReadOnlyDictionary<string, string> Quarantined { get; } = new Dictionary<string, string>();

    public IReadOnlyCollection<string> Cancelled { get; } = [];

    public IReadOnlyDictionary<string, string> Unprepared { get; } = new Dictionary<string, string>();

    public ClusterMembership Membership => telemetry.Membership;

    public IReadOnlyList<TrainerView> Trainers(IReadOnlyList<SweepState> sweeps)
        => telemetry.Trainers.Select(t => new TrainerView(t.Trainer, t.Device, telemetry.RunningProgress()
            .Where(p => telemetry.TrainerOf(p.TrialId) == t.Trainer)
            .Select(p => new TrainerTrial(p.TrialId, telemetry.SweepId, p.Attempt, p.Step, p.TotalSteps, p.Loss, p.TokensPerSecond, p.EtaSeconds))
            .ToList())).ToList();

    public string? TrialDirectory(string sweep, string trial) => sweep == telemetry.SweepId ? Path.Combine(sweepDirectory, "trials", trial) : null;
}
