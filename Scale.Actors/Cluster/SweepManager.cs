using Akka.Actor;
using Akka.Event;
using Akka.Pattern;
using Akka.Persistence;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Cluster;

/// <summary>
/// The cluster's sweep manager, run as a cluster singleton: it journals which sweeps were submitted, keeps one
/// <see cref="SweepCoordinator"/> per sweep as a child (each recovering its own journal, each restarted with
/// backoff when its database cannot be reached), routes <see cref="ToSweep"/> messages to them, and watches the
/// cluster's membership: the running trials of a node that left or was downed are pending again.
/// When the singleton moves to another node, the new instance recovers all of this from the journal.
/// </summary>
public sealed class SweepManager : ReceivePersistentActor, IWithTimers
{
    private sealed record CheckMembers
    {
        public static readonly CheckMembers Instance = new();
    }

    private readonly Dictionary<string, SubmittedSweep> sweeps = new();
    private readonly List<string> order = new();
    private readonly Dictionary<string, IActorRef> coordinators = new();
    /// <summary>Sweeps left out, with the reason: they answer with it, and the others run.</summary>
    private readonly Dictionary<string, string> quarantined = new();
    private readonly Dictionary<string, string> unprepared = new();   // what workers reported since this manager started; not journaled
    private readonly HashSet<string> cancelled = new();
    private readonly TimeSpan memberCheck;
    private readonly IReadOnlyList<string> dataRoots;
    private readonly ILoggingAdapter log = Context.GetLogger();

    public SweepManager(IReadOnlyList<string> dataRoots, TimeSpan memberCheck)
    {
        (this.dataRoots, this.memberCheck) = (dataRoots, memberCheck);
        Recover<SweepSubmitted>(Add);
        Recover<SweepCancelled>(e => cancelled.Add(e.SweepId));
        Recover<UnreadableManagerEvent>(Unreadable);
        Recover<RecoveryCompleted>(_ =>
        {
            foreach (var id in order)
            {
                if (quarantined.ContainsKey(id)) continue;   // its submission could not be read
                try
                {
                    SweepDefinitionJson.Read(sweeps[id].Definition);   // one journaled before submissions were validated may not pass now
                    Coordinator(id);
                }
                catch (Exception e) when (e is ArgumentException or InvalidActorNameException)
                {
                    // One bad sweep must not disable the manager: it is left out, said in the log, and the others run.
                    Quarantine(id, $"its definition no longer validates: {e.Message}");
                }
            }
            log.Info("sweep manager: {0} sweep(s) recovered from the journal", order.Count);
        });
        Command<SubmitSweep>(Submit);
        Command<CancelSweep>(Cancel);
        Command<ToSweep>(to =>
        {
            if (cancelled.Contains(to.SweepId) && to.Message is not GetSweepState)
            {
                // A cancelled sweep hands out nothing, and its running trials are told to stop at their next report.
                Sender.Tell(to.Message switch
                {
                    RequestWork => new NoWorkAvailable(true),
                    ITrialReport r => new AttemptSuperseded(r.TrialId, r.Attempt),
                    _ => new Status.Failure(new ArgumentException($"Sweep '{to.SweepId}' was cancelled.")),
                });
                return;
            }
            if (quarantined.TryGetValue(to.SweepId, out var why))
                Sender.Tell(new Status.Failure(new ArgumentException($"Sweep '{to.SweepId}' is quarantined and does not run: {why}")));
            else if (sweeps.ContainsKey(to.SweepId)) Coordinator(to.SweepId).Forward(to.Message);
            else Sender.Tell(new Status.Failure(new ArgumentException($"No sweep '{to.SweepId}' was submitted to this cluster.")));
        });
        Command<GetSweeps>(get =>
        {
            try
            {
                Sender.Tell(SweepPages.Page(get, order, sweeps, quarantined, unprepared, cancelled));
            }
            catch (ArgumentException e)
            {
                Sender.Tell(new Status.Failure(e));
            }
        });
        Command<ReportSweepUnprepared>(r =>
        {
            if (!sweeps.ContainsKey(r.SweepId)) return;
            unprepared[r.SweepId] = $"{r.Worker}: {r.Reason}";
            log.Warning("sweep manager: worker {0} cannot prepare sweep {1}: {2}", r.Worker, r.SweepId, r.Reason);
        });
        // A coordinator whose journal holds an event it cannot read stops and says so: its sweep is left out, the others run.
        Command<SweepQuarantined>(q =>
        {
            if (!sweeps.ContainsKey(q.SweepId)) return;
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

    public override string PersistenceId => "sweep-manager";

    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>
    /// The manager under a backoff supervisor: a database that cannot be reached stops it, and it is started again with
    /// backoff. A submission's data paths must lie inside <paramref name="dataRoots"/> (<see cref="DataRoots"/>).
    /// </summary>
    public static Props Props(IReadOnlyList<string> dataRoots, TimeSpan? memberCheck = null)
        => BackoffSupervisor.Props(Backoff.OnStop(
            Akka.Actor.Props.Create(() => new SweepManager(dataRoots, memberCheck ?? TimeSpan.FromSeconds(2))),
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
        SweepDefinition definition;
        try
        {
            definition = SweepDefinitionJson.Read(submit.Definition);
            if (definition.Name != submit.SweepId) throw new ArgumentException($"the definition is named '{definition.Name}', not '{submit.SweepId}'");
            DataRoots.Check(definition, dataRoots);
        }
        catch (ArgumentException e)
        {
            Sender.Tell(new Status.Failure(new ArgumentException($"Sweep '{submit.SweepId}' refused: {e.Message}")));
            return;
        }
        var sender = Sender;
        if (cancelled.Contains(submit.SweepId))
        {
            sender.Tell(new Status.Failure(new ArgumentException($"Sweep '{submit.SweepId}' was cancelled on this cluster; submit it under a new name.")));
            return;
        }
        if (quarantined.TryGetValue(submit.SweepId, out var why))
        {
            sender.Tell(new Status.Failure(new ArgumentException($"Sweep '{submit.SweepId}' is quarantined on this cluster: {why}")));
            return;
        }
        if (sweeps.TryGetValue(submit.SweepId, out var known))
        {
            // Submitted again (a resume): the coordinator answers that nothing new happened, or why it refuses.
            var before = SweepDefinitionJson.Read(known.Definition);
            try
            {
                definition.CheckResumes(before.Fingerprint, before.Trials.Select(t => t.Id).ToList(), "in this cluster");
            }
            catch (ArgumentException e)
            {
                sender.Tell(new Status.Failure(e));
                return;
            }
            Coordinator(submit.SweepId).Tell(definition.StartCommand, sender);
            return;
        }
        Persist(new SweepSubmitted(submit.SweepId, submit.Definition), e =>
        {
            Add(e);
            log.Info("sweep manager: sweep {0} submitted ({1} trials)", e.SweepId, definition.Trials.Count);
            Coordinator(e.SweepId).Tell(definition.StartCommand, sender);
        });
    }

    private void Cancel(CancelSweep cancel)
    {
        var sender = Sender;
        if (!sweeps.ContainsKey(cancel.SweepId))
        {
            sender.Tell(new Status.Failure(new ArgumentException($"No sweep '{cancel.SweepId}' was submitted to this cluster.")));
            return;
        }
        if (cancelled.Contains(cancel.SweepId))
        {
            sender.Tell(new Accepted(0));
            return;
        }
        Persist(new SweepCancelled(cancel.SweepId), e =>
        {
            cancelled.Add(e.SweepId);
            log.Warning("sweep manager: sweep {0} cancelled; its trials are handed out no more", e.SweepId);
            sender.Tell(new Accepted(1));
        });
    }

    private void Unreadable(UnreadableManagerEvent e)
    {
        var why = $"its {e.Manifest} row {LastSequenceNr} in the sweep manager's journal cannot be read ({e.Reason}); restore the journal from a backup, or submit the sweep under a new name";
        if (e.SweepId is { } id && SweepFiles.NamePattern().IsMatch(id))
        {
            if (e.Manifest.StartsWith("sweep-cancelled", StringComparison.Ordinal))
            {
                cancelled.Add(id);   // what was cancelled stays cancelled
                log.Error("sweep manager: a cancellation of sweep {0} cannot be read ({1}); the sweep stays cancelled", id, e.Reason);
                return;
            }
            if (sweeps.TryAdd(id, new SubmittedSweep(id, ""))) order.Add(id);
            Quarantine(id, why);
        }
        else Quarantine($"(manager journal row {LastSequenceNr})", why);
    }

    private void Quarantine(string sweepId, string reason)
    {
        quarantined[sweepId] = reason;
        log.Error("sweep manager: sweep {0} is quarantined and will not run: {1}", sweepId, reason);
    }

    private void Add(SweepSubmitted e)
    {
        if (sweeps.TryAdd(e.SweepId, new SubmittedSweep(e.SweepId, e.Definition))) order.Add(e.SweepId);
    }

    private IActorRef Coordinator(string sweepId)
    {
        if (coordinators.TryGetValue(sweepId, out var existing)) return existing;
        return coordinators[sweepId] = Context.ActorOf(SweepCoordinator.Supervised(sweepId), $"sweep-{sweepId}");
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
