using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace Scale.Actors.Sweeps;

/// <summary>A trainer asked for work and got this trial (resume from <see cref="Checkpoint"/> when it is set).</summary>
public sealed record WorkGranted(TrialSpec Trial, int Attempt, CheckpointRef? Checkpoint);

/// <summary>A trainer asked for work and there is none now (all running, done, or the concurrency limit is reached).</summary>
public sealed record NoWorkAvailable(bool SweepFinished);

/// <summary>A command was handled (persisted when it changed anything).</summary>
public sealed record Accepted(int EventsPersisted);

/// <summary>
/// A report named an attempt that is no longer the trial's running one (the trial was re-queued and given to
/// another trainer, or is already finished): the reporter must stop running it. Nothing of the report is recorded.
/// </summary>
public sealed record AttemptSuperseded(string TrialId, int Attempt);

/// <summary>Asks for the coordinator's current state.</summary>
public sealed record GetSweepState
{
    public static readonly GetSweepState Instance = new();
}

/// <summary>
/// The event-sourced sweep coordinator: it glues <see cref="SweepState"/>'s Decide/Apply to persistence.
/// Every command is decided against the current state; the resulting events are persisted, applied and
/// only then acknowledged, so a reply means the change is durable. Recovery replays the journal.
/// </summary>
public sealed class SweepCoordinator : ReceivePersistentActor
{
    private SweepState state = SweepState.Empty;
    private readonly int snapshotEvery;

    public SweepCoordinator(string sweepId, int snapshotEvery = 100)
    {
        PersistenceId = PersistenceIdOf(sweepId);
        this.snapshotEvery = snapshotEvery;
        Recover<SnapshotOffer>(offer =>
        {
            if (offer.Snapshot is SweepSnapshot snapshot) state = snapshot.ToState();
        });
        Recover<ISweepEvent>(e => state = state.Apply(e));
        Command<SaveSnapshotSuccess>(success => DeleteSnapshots(new SnapshotSelectionCriteria(success.Metadata.SequenceNr - 1)));
        Command<SaveSnapshotFailure>(failure => Context.GetLogger().Warning("sweep {0}: snapshot failed ({1}); recovery replays more events", PersistenceId, failure.Cause.Message));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(_ => { });
        Command<GetSweepState>(_ => Sender.Tell(state));
        Command<ISweepCommand>(Handle);
    }

    public override string PersistenceId { get; }

    public static string PersistenceIdOf(string sweepId) => $"sweep-{sweepId}";

    /// <summary>Snapshots are taken every <paramref name="snapshotEvery"/> events, so recovery replays at most that many.</summary>
    public static Props Props(string sweepId, int snapshotEvery = 100) => Akka.Actor.Props.Create(() => new SweepCoordinator(sweepId, snapshotEvery));

    /// <summary>
    /// The coordinator under a backoff supervisor, as a cluster runs it: when its database cannot be reached it stops
    /// (Akka.Persistence stops a persistent actor whose write or recovery fails), hands out no work while it is down —
    /// messages to it go unanswered, and trainers ask again — and is started again after 1 s, 2 s, 4 s … up to
    /// <paramref name="maxBackoff"/>, recovering from the journal each time. A write that failed was not recorded,
    /// and the trainer sends it again, so nothing is recorded twice.
    /// </summary>
    public static Props Supervised(string sweepId, TimeSpan? minBackoff = null, TimeSpan? maxBackoff = null)
        => Akka.Pattern.BackoffSupervisor.Props(Akka.Pattern.Backoff.OnStop(Props(sweepId), "coordinator",
            minBackoff ?? TimeSpan.FromSeconds(1), maxBackoff ?? TimeSpan.FromSeconds(30), 0.2, -1));

    private void Handle(ISweepCommand command)
    {
        IReadOnlyList<ISweepEvent> events;
        try
        {
            events = state.Decide(command, DateTime.UtcNow);
        }
        catch (ArgumentException e)
        {
            Sender.Tell(new Status.Failure(e));
            return;
        }
        var sender = Sender;
        if (events.Count == 0)
        {
            sender.Tell(command switch
            {
                RequestWork => new NoWorkAvailable(state.Finished),
                ITrialReport r when !state.IsCurrent(r.TrialId, r.Attempt) => new AttemptSuperseded(r.TrialId, r.Attempt),
                _ => new Accepted(0),
            });
            return;
        }
        int persisted = 0;
        var writing = System.Diagnostics.Stopwatch.StartNew();
        PersistAll(events, e =>
        {
            state = state.Apply(e);
            Context.System.EventStream.Publish(e);   // for progress displays and status views in this process
            if (LastSequenceNr % snapshotEvery == 0) SaveSnapshot(SweepSnapshot.Of(state));
            if (++persisted < events.Count) return;
            Telemetry.SweepMetrics.JournalWriteSeconds.Record(writing.Elapsed.TotalSeconds, new KeyValuePair<string, object?>("sweep", state.SweepId));
            sender.Tell(events[^1] switch
            {
                TrialStarted started => new WorkGranted(state.Trials[started.TrialId].Spec, started.Attempt, state.Trials[started.TrialId].LastCheckpoint),
                _ when command is RequestWork => new NoWorkAvailable(state.Finished),
                _ => new Accepted(events.Count),
            });
        });
    }
}
