using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace Scale.Actors.Sweeps;

/// <summary>A trainer asked for work and got this trial (resume from <see cref="Checkpoint"/> when it is set).</summary>
internal sealed record WorkGranted(TrialSpec Trial, int Attempt, CheckpointRef? Checkpoint);

/// <summary>A trainer asked for work and there is none now (all running, done, or the concurrency limit is reached).</summary>
internal sealed record NoWorkAvailable(bool SweepFinished);

/// <summary>A command was handled (persisted when it changed anything).</summary>
internal sealed record Accepted(int EventsPersisted);

/// <summary>
/// A report named an attempt that is no longer the trial's running one (the trial was re-queued and given to
/// another trainer, or is already finished): the reporter must stop running it. Nothing of the report is recorded.
/// </summary>
internal sealed record AttemptSuperseded(string TrialId, int Attempt);

/// <summary>The answer to a score report that stopped its trial (the sweep's scheduler): the reporter stops training it.</summary>
internal sealed record TrialStopRequested(string TrialId, int Attempt, string Reason);

/// <summary>
/// A sweep whose journal cannot be recovered (an event that cannot be read: damaged, or written by a newer Scale): its
/// coordinator stops and says why, on the event stream, so that the process reports it and the others go on. The
/// journal is left as it is.
/// </summary>
internal sealed record SweepQuarantined(string SweepId, string Reason);

/// <summary>
/// A write or read of a sweep's journal failed (the database locked past its busy timeout, a full disk, a lost server):
/// the coordinator stops and its supervisor starts it again; said on the event stream, so that a process waiting on
/// the sweep can bound how long it waits.
/// </summary>
internal sealed record SweepJournalFault(string SweepId, string Reason);

/// <summary>Asks for the coordinator's current state.</summary>
internal sealed record GetSweepState
{
    public static readonly GetSweepState Instance = new();
}

/// <summary>
/// The event-sourced sweep coordinator: it glues <see cref="SweepState"/>'s Decide/Apply to persistence.
/// Every command is decided against the current state; the resulting events are persisted, applied and
/// only then acknowledged, so a reply means the change is durable. Recovery replays the journal.
/// </summary>
internal sealed class SweepCoordinator : ReceivePersistentActor
{
    /// <summary>Thrown (restarting the coordinator) once an unreadable snapshot is deleted, so that recovery replays the events.</summary>
    private sealed class SnapshotDiscardedException(string sweepId, Exception? cause = null)
        : Exception($"sweep {sweepId}: an unreadable snapshot was discarded; recovering again from the events", cause);

    private SweepState state = SweepState.Empty;
    private readonly int snapshotEvery;
    private readonly string sweepId;
    private (long SequenceNr, string Reason)? unreadableSnapshot;

    public SweepCoordinator(string sweepId, int snapshotEvery = 100)
    {
        this.sweepId = sweepId;
        PersistenceId = PersistenceIdOf(sweepId);
        this.snapshotEvery = snapshotEvery;
        Recover<SnapshotOffer>(offer =>
        {
            if (offer.Snapshot is SweepSnapshot snapshot) state = snapshot.ToState();
            else if (offer.Snapshot is UnreadableSnapshot bad) unreadableSnapshot = (offer.Metadata.SequenceNr, bad.Reason);
        });
        // Journals written before the sweep manager had an id of its own (sweep-manager, now a sweep's id like any other)
        // hold the manager's rows there: they are the manager's, copied to its own id, and a sweep named `manager` skips them.
        Recover<Cluster.IManagerEvent>(_ => { });
        Recover<Cluster.UnreadableManagerEvent>(_ => { });
        Recover<ISweepEvent>(e =>
        {
            if (unreadableSnapshot is null) state = state.Apply(e);   // after an unreadable snapshot the events alone are not the state
        });
        Recover<RecoveryCompleted>(_ =>
        {
            if (unreadableSnapshot is not { } bad) return;
            // The snapshot is only a shortcut: it is deleted, and the coordinator restarts and replays the events from the start.
            Context.GetLogger().Warning("sweep {0}: snapshot at event {1} is unreadable ({2}); deleting it and recovering from the events", sweepId, bad.SequenceNr, bad.Reason);
            DeleteSnapshot(bad.SequenceNr);
            Become(() =>
            {
                Command<DeleteSnapshotSuccess>(_ => throw new SnapshotDiscardedException(sweepId));
                Command<DeleteSnapshotFailure>(f => throw new SnapshotDiscardedException(sweepId, f.Cause));
                CommandAny(_ => Stash.Stash());   // answered after the restart, from the state the events give
            });
        });
        Command<SaveSnapshotSuccess>(success => DeleteSnapshots(new SnapshotSelectionCriteria(success.Metadata.SequenceNr - 1)));
        Command<SaveSnapshotFailure>(failure => Context.GetLogger().Warning("sweep {0}: snapshot failed ({1}); recovery replays more events", PersistenceId, failure.Cause.Message));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(_ => { });
        Command<GetSweepState>(_ => Sender.Tell(state));
        Command<ISweepCommand>(Handle);
    }

    public override string PersistenceId { get; }

    /// <summary>
    /// An event that cannot be read quarantines the sweep (said on the event stream, with the reason); any other recovery
    /// failure (the database cannot be reached) stops the coordinator as before, for its supervisor to start it again.
    /// </summary>
    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        var unreadable = Unreadable(reason);
        if (unreadable is not null)
        {
            var why = $"event {LastSequenceNr + 1} of its journal cannot be read: {unreadable.Message}";
            Context.GetLogger().Error("sweep {0} is quarantined: {1}; its journal is kept as it is", sweepId, why);
            Context.System.EventStream.Publish(new SweepQuarantined(sweepId, why));
        }
        else Context.System.EventStream.Publish(new SweepJournalFault(sweepId, Innermost(reason).Message));
        base.OnRecoveryFailure(reason, message);
    }

    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        Context.System.EventStream.Publish(new SweepJournalFault(sweepId, Innermost(cause).Message));
        base.OnPersistFailure(cause, @event, sequenceNr);
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e;
    }

    /// <summary>The serialization failure behind a recovery failure, if that is what it was.</summary>
    public static Exception? Unreadable(Exception? error)
    {
        for (var e = error; e is not null; e = e.InnerException)
            if (e is System.Runtime.Serialization.SerializationException or System.Text.Json.JsonException) return e;
        return error is AggregateException aggregate ? aggregate.InnerExceptions.Select(Unreadable).FirstOrDefault(x => x is not null) : null;
    }

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
    public static Props Supervised(string sweepId, int snapshotEvery = 100, TimeSpan? minBackoff = null, TimeSpan? maxBackoff = null)
        => Akka.Pattern.BackoffSupervisor.Props(Akka.Pattern.Backoff.OnStop(Props(sweepId, snapshotEvery), "coordinator",
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
                TrialStopped stopped => new TrialStopRequested(stopped.TrialId, stopped.Attempt,
                    $"stopped by the scheduler at step {stopped.Decision.Step}: {stopped.Decision.Score:0.####} is below the rung's cutoff {stopped.Decision.Cutoff:0.####}"),
                _ when command is RequestWork => new NoWorkAvailable(state.Finished),
                _ => new Accepted(events.Count),
            });
        });
    }
}
