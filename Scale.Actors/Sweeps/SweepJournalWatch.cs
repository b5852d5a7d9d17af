using Akka.Actor;
using Scale.Actors.Telemetry;

namespace Scale.Actors.Sweeps;

/// <summary>
/// Hears a sweep's coordinator say that its journal cannot be recovered (the sweep is quarantined) or cannot be written
/// (each failed write; the coordinator is restarted with backoff and the trainers send their reports again), and that
/// it wrote again. A run waits for an unwritable journal up to <see cref="Patience"/>, then ends saying why.
/// </summary>
internal sealed class SweepJournalWatch
{
    /// <summary>How long a journal that fails every write (locked by another process, a full disk) is waited for before the run ends.</summary>
    public static readonly TimeSpan Patience = TimeSpan.FromMinutes(2);

    private readonly TaskCompletionSource<SweepQuarantined> quarantined = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly string journal;
    private readonly Lock gate = new();
    private DateTime? faultSince;
    private string? lastFault;

    /// <param name="journal">The journal as the user knows it (its database file), for the lines that name it.</param>
    public SweepJournalWatch(ActorSystem system, string sweep, string journal)
    {
        this.journal = journal;
        EventTap.Start(system, "journal-tap", message =>
        {
            switch (message)
            {
                case SweepQuarantined q when q.SweepId == sweep: quarantined.TrySetResult(q); break;
                case SweepJournalFault f when f.SweepId == sweep:
                    lock (gate) (faultSince, lastFault) = (faultSince ?? DateTime.UtcNow, f.Reason);
                    break;
                case ISweepEvent:
                    lock (gate) faultSince = null;   // a write went through
                    break;
            }
        }, typeof(SweepQuarantined), typeof(SweepJournalFault), typeof(ISweepEvent));
    }

    /// <summary>Completes when the sweep is quarantined, with the coordinator's reason.</summary>
    public Task<SweepQuarantined> WhenQuarantined => quarantined.Task;

    /// <summary>Why the run should end, when the journal has failed every write for longer than <see cref="Patience"/>; else null.</summary>
    public string? GivenUp()
    {
        lock (gate)
            return faultSince is { } since && DateTime.UtcNow - since > Patience ? Fault() : null;
    }

    /// <summary>One line on the journal's failing writes (how long, the last error), or null while it writes.</summary>
    public string? Fault()
    {
        lock (gate)
            return faultSince is { } since ? $"the sweep's journal {journal} could not be written for {(DateTime.UtcNow - since).TotalSeconds:0} s ({lastFault})" : null;
    }
}
