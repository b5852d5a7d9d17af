using Akka.Actor;
using Akka.Event;
using Akka.Pattern;
using Akka.Persistence;
using Akka.Persistence.Query;
using Akka.Persistence.Sql.Query;
using Akka.Streams;
using Akka.Streams.Dsl;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Cluster;

/// <summary>
/// The cluster's sweep manager, run as a cluster singleton: it journals which sweeps were submitted, keeps one
/// <see cref="SweepCoordinator"/> per sweep as a child (each recovering its own journal, each restarted with
/// backoff when its database cannot be reached), routes <see cref="ToSweep"/> messages to them, and watches the
/// cluster's membership: the running trials of a node that left or was downed are pending again.
/// When the singleton moves to another node, the new instance recovers all of this from the journal.
/// </summary>
internal sealed class SweepManager : ReceivePersistentActor, IWithTimers
{
    private sealed record CheckMembers
    {
        public static readonly CheckMembers Instance = new();
    }

    /// <summary>A first submission, with what the sweep's journal already held (<see cref="SweepState"/>) or why it did not answer.</summary>
    private sealed record FirstSubmission(SubmitSweep Submit, SweepDefinition Definition, IActorRef Sender, object Journal);

    /// <summary>What the journal says, and what workers reported: decided on and changed by <see cref="ManagerState"/> only.</summary>
    private ManagerState state = ManagerState.Empty;
    private readonly Dictionary<string, IActorRef> coordinators = new();
    private readonly Dictionary<string, int> incarnations = new();
    /// <summary>First submissions waiting for what their sweep's journal already holds, with whom to answer.</summary>
    private readonly Dictionary<string, IActorRef> pending = new();
    private readonly TimeSpan memberCheck;
    private readonly IReadOnlyList<string>? dataRoots;
    private readonly int snapshotEvery;
    private readonly string? onlySweep;
    private readonly ILoggingAdapter log = Context.GetLogger();

    public SweepManager(IReadOnlyList<string>? dataRoots, TimeSpan memberCheck, int snapshotEvery = 100, string? onlySweep = null)
    {
        (this.dataRoots, this.memberCheck, this.snapshotEvery, this.onlySweep) = (dataRoots, memberCheck, snapshotEvery, onlySweep);
        PersistenceId = onlySweep is null ? ManagerPersistenceId : LocalPersistenceIdOf(onlySweep);
        Recover<IManagerEvent>(e => state = state.Apply(e));
        Recover<UnreadableManagerEvent>(Unreadable);
        Recover<RecoveryCompleted>(_ =>
        {
            if (LastSequenceNr > 0 || onlySweep is not null)
            {
                Recovered();
                return;
            }
            // Nothing under this id yet: a journal from before it existed may hold the manager's rows under the former id.
            BecomeStacked(Migrating);
            PersistenceQuery.Get(Context.System).ReadJournalFor<SqlReadJournal>(SqlReadJournal.Identifier)
                .CurrentEventsByPersistenceId(LegacyPersistenceId, 0, long.MaxValue)
                .Select(envelope => envelope.Event).Where(e => e is IManagerEvent or UnreadableManagerEvent)
                .RunWith(Sink.Seq<object>(), Context.System.Materializer())
                .PipeTo(Self, success: rows => new LegacyRows(rows), failure: e => new LegacyRows([]) { Error = e });
        });
        Command<SubmitSweep>(Submit);
        Command<FirstSubmission>(Record);
        Command<CancelSweep>(Cancel);
        Command<ToSweep>(to =>
        {
            if (state.Answer(to) is { } answer) Sender.Tell(answer);
            else Coordinator(to.SweepId).Forward(to.Message);
        });
        Command<GetSweeps>(get =>
        {
            try
            {
                Sender.Tell(state.Page(get));
            }
            catch (ArgumentException e)
            {
                Sender.Tell(new Status.Failure(e));
            }
        });
        Command<ReportSweepUnprepared>(r =>
        {
            if (!state.Sweeps.ContainsKey(r.SweepId)) return;
            state = state.Unprepare(r);
            log.Warning("sweep manager: worker {0} cannot prepare sweep {1}: {2}", r.Worker, r.SweepId, r.Reason);
        });
        // A coordinator whose journal holds an event it cannot read stops and says so: its sweep is left out, the others run.
        Command<SweepQuarantined>(q =>
        {
            if (pending.Remove(q.SweepId, out var submitter))
            {
                // A first submission of a sweep whose existing journal cannot be read: refused, and nothing recorded.
                if (coordinators.Remove(q.SweepId, out var unreadable)) Context.Stop(unreadable);
                submitter.Tell(new Status.Failure(new ArgumentException($"Sweep '{q.SweepId}' cannot be recovered: {q.Reason}")));
                return;
            }
            if (!state.Sweeps.ContainsKey(q.SweepId)) return;
            if (coordinators.Remove(q.SweepId, out var supervisor)) Context.Stop(supervisor);
            Quarantine(q.SweepId, q.Reason);
        });
        Command<CheckMembers>(_ => RequeueLostNodes());
        Command<Akka.Cluster.ClusterEvent.MemberRemoved>(_ => RequeueLostNodes());
        Command<Akka.Cluster.ClusterEvent.IMemberEvent>(_ => { });
        Command<Akka.Cluster.ClusterEvent.CurrentClusterState>(_ => { });
        Command<Accepted>(_ => { });
        Command<Status.Failure>(f => log.Warning("sweep manager: {0}", f.Cause.Message));
    }

    /// <summary>The manager's journal: an id no sweep's can be (those are `sweep-` and a name of lower-case letters, digits, '-' and '_').</summary>
    public const string ManagerPersistenceId = "scale.sweep-manager";

    /// <summary>Where versions before it journaled the manager: the id a sweep named `manager` has now.</summary>
    public const string LegacyPersistenceId = "sweep-manager";

    /// <summary>
    /// A local run's manager: it manages the run's one sweep (other processes may run other sweeps of the same data
    /// directory at once), under an id of that sweep's, which only the process holding the sweep's lock writes.
    /// </summary>
    public static string LocalPersistenceIdOf(string sweepId) => $"scale.local-run.{sweepId}";

    public override string PersistenceId { get; }

    /// <summary>The manager's rows of a journal written before <see cref="ManagerPersistenceId"/> (none if there are none).</summary>
    private sealed record LegacyRows(IReadOnlyList<object> Rows)
    {
        public Exception? Error { get; init; }
    }

    /// <summary>
    /// Copies the former id's manager rows to this one, once: afterwards the manager recovers from its own id only, and
    /// the former id belongs to a sweep named `manager` (whose coordinator skips these rows). Rows that cannot be read
    /// are applied from there on every start instead, and nothing is copied until every row reads.
    /// </summary>
    private void Migrating()
    {
        Command<LegacyRows>(legacy =>
        {
            if (legacy.Error is not null)
                throw new InvalidOperationException($"sweep manager: the journal's rows under {LegacyPersistenceId} could not be read: {legacy.Error.Message}", legacy.Error);
            var readable = legacy.Rows.OfType<IManagerEvent>().ToList();
            foreach (var row in legacy.Rows) Apply(row);
            if (readable.Count == 0 || readable.Count < legacy.Rows.Count)
            {
                if (readable.Count < legacy.Rows.Count)
                    log.Warning("sweep manager: {0} of the {1} rows under {2} cannot be read; they are applied from there until the journal is restored",
                                legacy.Rows.Count - readable.Count, legacy.Rows.Count, LegacyPersistenceId);
                Ready();
                return;
            }
            PersistAll(readable, _ => { });
            DeferAsync(readable.Count, _ =>
            {
                log.Info("sweep manager: {0} row(s) copied from {1} to {2}", readable.Count, LegacyPersistenceId, ManagerPersistenceId);
                Ready();
            });
        });
        CommandAny(_ => Stash.Stash());
    }

    private void Ready()
    {
        UnbecomeStacked();
        Stash.UnstashAll();
        Recovered();
    }

    private void Apply(object row)
    {
        if (row is IManagerEvent e) state = state.Apply(e);
        else if (row is UnreadableManagerEvent unreadable) Unreadable(unreadable);
    }

    /// <summary>Every recovered sweep that runs gets its coordinator (which recovers its own journal).</summary>
    private void Recovered()
    {
        foreach (var (id, why) in state.Quarantined) log.Error("sweep manager: sweep {0} is quarantined and will not run: {1}", id, why);
        foreach (var id in state.Runnable.ToList())
        {
            try
            {
                Coordinator(id);
            }
            catch (InvalidActorNameException e)
            {
                // One bad sweep must not disable the manager: it is left out, said in the log, and the others run.
                Quarantine(id, $"its name cannot name a coordinator: {e.Message}");
            }
        }
        log.Info("sweep manager: {0} sweep(s) recovered from the journal", state.Order.Count);
    }

    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>
    /// The manager under a backoff supervisor: a database that cannot be reached stops it, and it is started again with
    /// backoff. A submission's data paths must lie inside <paramref name="dataRoots"/> (<see cref="DataRoots"/>); null
    /// checks none (a local run: the submitter is the machine's own user). Its coordinators snapshot every
    /// <paramref name="snapshotEvery"/> events.
    /// </summary>
    public static Props Props(IReadOnlyList<string>? dataRoots, TimeSpan? memberCheck = null, int snapshotEvery = 100, string? onlySweep = null)
        => BackoffSupervisor.Props(Backoff.OnStop(
            Akka.Actor.Props.Create(() => new SweepManager(dataRoots, memberCheck ?? TimeSpan.FromSeconds(2), snapshotEvery, onlySweep)),
            "manager", TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), 0.2, -1));

    protected override void PreStart()
    {
        base.PreStart();
        Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, Akka.Cluster.ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot,
                                                          typeof(Akka.Cluster.ClusterEvent.IMemberEvent));
        Context.System.EventStream.Subscribe(Self, typeof(SweepQuarantined));
        Timers.StartPeriodicTimer("members", CheckMembers.Instance, memberCheck);
    }

    protected override void PostStop()
    {
        Akka.Cluster.Cluster.Get(Context.System).Unsubscribe(Self);
        Context.System.EventStream.Unsubscribe(Self);
        base.PostStop();
    }

    private void Submit(SubmitSweep submit)
    {
        var sender = Sender;
        switch (state.Decide(submit, onlySweep, dataRoots, pending.ContainsKey(submit.SweepId)))
        {
            case SubmitDecision.Refuse refused:
                sender.Tell(new Status.Failure(refused.Error));
                break;
            case SubmitDecision.Resubmit again:
                // Submitted again (a resume): the coordinator answers that nothing new happened, or why it refuses.
                Coordinator(submit.SweepId).Tell(again.Definition.StartCommand, sender);
                break;
            case SubmitDecision.First first:
                // The sweep may already have a journal that no submission of this manager names (a local run of an earlier
                // version wrote its coordinator's events only): its coordinator recovers it first, and a changed definition is
                // refused before anything is recorded.
                pending[submit.SweepId] = sender;
                Coordinator(submit.SweepId).Ask<object>(GetSweepState.Instance, TimeSpan.FromMinutes(1)).PipeTo(Self,
                    success: journal => new FirstSubmission(submit, first.Definition, sender, journal),
                    failure: e => new FirstSubmission(submit, first.Definition, sender, new Status.Failure(e)));
                break;
        }
    }

    private void Record(FirstSubmission first)
    {
        var (submit, definition, sender) = (first.Submit, first.Definition, first.Sender);
        if (!pending.Remove(submit.SweepId)) return;   // answered already (its journal cannot be read)
        if (state.Sweeps.ContainsKey(submit.SweepId))
        {
            Self.Tell(submit, sender);   // submitted meanwhile: answered as a resubmission
            return;
        }
        if (ManagerState.CheckFirst(submit.SweepId, definition, first.Journal) is { } refused)
        {
            sender.Tell(new Status.Failure(refused));   // its coordinator stays: it holds the sweep's journal for the next submission
            return;
        }
        Persist(new SweepSubmitted(submit.SweepId, submit.Definition), e =>
        {
            state = state.Apply(e, definition);
            log.Info("sweep manager: sweep {0} submitted ({1} trials)", e.SweepId, definition.Trials.Count);
            Coordinator(e.SweepId).Tell(definition.StartCommand, sender);
        });
    }

    private void Cancel(CancelSweep cancel)
    {
        var sender = Sender;
        switch (state.Decide(cancel))
        {
            case CancelDecision.Refuse refused:
                sender.Tell(new Status.Failure(refused.Error));
                break;
            case CancelDecision.AlreadyCancelled:
                sender.Tell(new Accepted(0));
                break;
            case CancelDecision.Record record:
                Persist(record.Event, e =>
                {
                    state = state.Apply(e);
                    log.Warning("sweep manager: sweep {0} cancelled; its trials are handed out no more", e.SweepId);
                    sender.Tell(new Accepted(1));
                });
                break;
        }
    }

    private void Unreadable(UnreadableManagerEvent e)
    {
        state = state.Apply(e, LastSequenceNr);
        if (e.Manifest.StartsWith("sweep-cancelled", StringComparison.Ordinal))
            log.Error("sweep manager: a cancellation of sweep {0} cannot be read ({1}); the sweep stays cancelled", e.SweepId, e.Reason);
    }

    private void Quarantine(string sweepId, string reason)
    {
        state = state.Quarantine(sweepId, reason);
        log.Error("sweep manager: sweep {0} is quarantined and will not run: {1}", sweepId, reason);
    }

    private IActorRef Coordinator(string sweepId)
    {
        if (coordinators.TryGetValue(sweepId, out var existing)) return existing;
        // A coordinator stopped here (quarantined) may still be stopping: a new one never takes its name.
        int incarnation = incarnations[sweepId] = incarnations.GetValueOrDefault(sweepId) + 1;
        return coordinators[sweepId] = Context.ActorOf(SweepCoordinator.Supervised(sweepId, snapshotEvery),
                                                       incarnation == 1 ? $"sweep-{sweepId}" : $"sweep-{sweepId}-{incarnation}");
    }

    /// <summary>Nodes that are members and not downed still run their trials (an unreachable node may come back until it is downed).</summary>
    private void RequeueLostNodes()
    {
        var members = Akka.Cluster.Cluster.Get(Context.System).State.Members
            .Where(m => m.Status is not (Akka.Cluster.MemberStatus.Down or Akka.Cluster.MemberStatus.Removed))
            .Select(m => m.Address.ToString()).ToList();
        foreach (var coordinator in coordinators.Values) coordinator.Tell(new RequeueLostNodes(members));
    }
}
