using System.Collections.Immutable;
using Akka.Actor;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Cluster;

/// <summary>What the sweep manager decides on a submission.</summary>
internal abstract record SubmitDecision
{
    /// <summary>Refused, with the error the submitter gets.</summary>
    public sealed record Refuse(Exception Error) : SubmitDecision;

    /// <summary>Submitted before: its coordinator answers (nothing new, or why it refuses to start).</summary>
    public sealed record Resubmit(SweepDefinition Definition) : SubmitDecision;

    /// <summary>New to this manager: what the sweep's journal already holds is checked (<see cref="ManagerState.CheckFirst"/>) before it is recorded.</summary>
    public sealed record First(SweepDefinition Definition) : SubmitDecision;
}

/// <summary>What the sweep manager decides on a cancellation.</summary>
internal abstract record CancelDecision
{
    public sealed record Refuse(Exception Error) : CancelDecision;
    public sealed record AlreadyCancelled : CancelDecision;
    public sealed record Record(SweepCancelled Event) : CancelDecision;
}

/// <summary>
/// The sweep manager's state as a value, with its decisions and its events' effect kept apart from the actor (as
/// <see cref="SweepState"/> is for a coordinator): which sweeps were submitted, in order, each definition read and
/// validated once (when its event is applied); which are cancelled, quarantined with the reason, or reported by a
/// worker that could not prepare them. Only <see cref="SweepSubmitted"/> and <see cref="SweepCancelled"/> are journaled.
/// </summary>
internal sealed record ManagerState
{
    public static readonly ManagerState Empty = new();

    public ImmutableDictionary<string, SubmittedSweep> Sweeps { get; init; } = ImmutableDictionary<string, SubmittedSweep>.Empty;
    /// <summary>The definitions that validate, read once; a submitted sweep without one is quarantined.</summary>
    public ImmutableDictionary<string, SweepDefinition> Definitions { get; init; } = ImmutableDictionary<string, SweepDefinition>.Empty;
    public ImmutableList<string> Order { get; init; } = ImmutableList<string>.Empty;
    /// <summary>Sweeps left out, with the reason: they answer with it, and the others run.</summary>
    public ImmutableDictionary<string, string> Quarantined { get; init; } = ImmutableDictionary<string, string>.Empty;
    public ImmutableHashSet<string> Cancelled { get; init; } = ImmutableHashSet<string>.Empty;
    /// <summary>What workers reported since this manager started (not journaled: a worker reports again).</summary>
    public ImmutableDictionary<string, string> Unprepared { get; init; } = ImmutableDictionary<string, string>.Empty;

    /// <summary>The sweeps that run: submitted, readable and not quarantined.</summary>
    public IEnumerable<string> Runnable => Order.Where(id => !Quarantined.ContainsKey(id));

    /// <summary>
    /// A journaled event's effect. A submission is read once here (<paramref name="read"/> when the caller has just read
    /// it); one that no longer validates (journaled by an earlier version) quarantines its sweep, and the others run.
    /// </summary>
    public ManagerState Apply(IManagerEvent e, SweepDefinition? read = null)
    {
        switch (e)
        {
            case SweepCancelled c:
                return this with { Cancelled = Cancelled.Add(c.SweepId) };
            case SweepSubmitted s when !Sweeps.ContainsKey(s.SweepId):
                var added = this with { Sweeps = Sweeps.Add(s.SweepId, new SubmittedSweep(s.SweepId, s.Definition)), Order = Order.Add(s.SweepId) };
                try
                {
                    return added with { Definitions = Definitions.Add(s.SweepId, read ?? SweepDefinitionJson.Read(s.Definition)) };
                }
                catch (ArgumentException error)
                {
                    return added.Quarantine(s.SweepId, $"its definition no longer validates: {error.Message}");
                }
            default:
                return this;
        }
    }

    /// <summary>
    /// A row that cannot be read, at <paramref name="sequenceNr"/>: a cancellation stays a cancellation (what was cancelled
    /// stays cancelled); a submission quarantines its sweep; a row naming no sweep is listed under its row number.
    /// </summary>
    public ManagerState Apply(UnreadableManagerEvent e, long sequenceNr)
    {
        var why = $"its {e.Manifest} row {sequenceNr} in the sweep manager's journal cannot be read ({e.Reason}); restore the journal from a backup, or submit the sweep under a new name";
        if (e.SweepId is not { } id || !SweepFiles.NamePattern().IsMatch(id)) return Quarantine($"(manager journal row {sequenceNr})", why);
        if (e.Manifest.StartsWith("sweep-cancelled", StringComparison.Ordinal)) return this with { Cancelled = Cancelled.Add(id) };
        var listed = Sweeps.ContainsKey(id) ? this : this with { Sweeps = Sweeps.Add(id, new SubmittedSweep(id, "")), Order = Order.Add(id) };
        return listed.Quarantine(id, why);
    }

    public ManagerState Quarantine(string sweepId, string reason)
        => this with { Quarantined = Quarantined.SetItem(sweepId, reason), Definitions = Definitions.Remove(sweepId) };

    /// <summary>A worker could not prepare a submitted sweep (an unknown one is ignored).</summary>
    public ManagerState Unprepare(ReportSweepUnprepared report)
        => Sweeps.ContainsKey(report.SweepId) ? this with { Unprepared = Unprepared.SetItem(report.SweepId, $"{report.Worker}: {report.Reason}") } : this;

    /// <summary>
    /// A submission: read and validated once (the sweep <paramref name="onlySweep"/> only, when given; its data under
    /// <paramref name="dataRoots"/>, when given), then refused (cancelled, quarantined, changed since it was submitted,
    /// or being submitted by another client: <paramref name="beingSubmitted"/>), submitted again, or new.
    /// </summary>
    public SubmitDecision Decide(SubmitSweep submit, string? onlySweep, IReadOnlyList<string>? dataRoots, bool beingSubmitted)
    {
        SweepDefinition definition;
        try
        {
            if (onlySweep is not null && submit.SweepId != onlySweep) throw new ArgumentException($"this process runs sweep '{onlySweep}' only");
            definition = SweepDefinitionJson.Read(submit.Definition, dataRoots);
            if (definition.Name != submit.SweepId) throw new ArgumentException($"the definition is named '{definition.Name}', not '{submit.SweepId}'");
        }
        catch (ArgumentException e)
        {
            return new SubmitDecision.Refuse(new ArgumentException($"Sweep '{submit.SweepId}' refused: {e.Message}"));
        }
        if (Cancelled.Contains(submit.SweepId))
            return new SubmitDecision.Refuse(new ArgumentException($"Sweep '{submit.SweepId}' was cancelled on this cluster; submit it under a new name."));
        if (Quarantined.TryGetValue(submit.SweepId, out var why))
            return new SubmitDecision.Refuse(new ArgumentException($"Sweep '{submit.SweepId}' is quarantined on this cluster: {why}"));
        if (Definitions.TryGetValue(submit.SweepId, out var before))
        {
            try
            {
                definition.CheckResumes(before.Fingerprint, before.Trials.Select(t => t.Id).ToList(), "in this journal");
            }
            catch (ArgumentException e)
            {
                return new SubmitDecision.Refuse(e);
            }
            return new SubmitDecision.Resubmit(definition);
        }
        if (beingSubmitted)
            return new SubmitDecision.Refuse(new InvalidOperationException($"Sweep '{submit.SweepId}' is being submitted by another client; submit it again in a moment."));
        return new SubmitDecision.First(definition);
    }

    /// <summary>
    /// A first submission against what its sweep's journal already holds (<paramref name="journal"/>: the coordinator's
    /// <see cref="SweepState"/>, or the failure of asking it): null when it may be recorded, else the submitter's error.
    /// </summary>
    public static Exception? CheckFirst(string sweepId, SweepDefinition definition, object journal)
    {
        if (journal is not SweepState state)
            return new InvalidOperationException($"Sweep '{sweepId}': its journal did not answer ({(journal as Status.Failure)?.Cause.Message}); submit it again.");
        try
        {
            if (state.Started) definition.CheckResumes(state.Fingerprint, state.Order, "in this journal");
            return null;
        }
        catch (ArgumentException e)
        {
            return e;
        }
    }

    public CancelDecision Decide(CancelSweep cancel)
        => !Sweeps.ContainsKey(cancel.SweepId) ? new CancelDecision.Refuse(new ArgumentException($"No sweep '{cancel.SweepId}' was submitted to this cluster."))
            : Cancelled.Contains(cancel.SweepId) ? new CancelDecision.AlreadyCancelled()
            : new CancelDecision.Record(new SweepCancelled(cancel.SweepId));

    /// <summary>
    /// The answer to a message for a sweep when the manager answers it itself (the sweep is cancelled, quarantined or
    /// unknown); null when its coordinator does. A cancelled sweep hands out nothing, and its running trials are told to
    /// stop at their next report; its state is still read from its coordinator.
    /// </summary>
    public object? Answer(ToSweep to)
    {
        if (Cancelled.Contains(to.SweepId) && to.Message is not GetSweepState)
            return to.Message switch
            {
                RequestWork => new NoWorkAvailable(true),
                ITrialReport r => new AttemptSuperseded(r.TrialId, r.Attempt),
                _ => new Status.Failure(new ArgumentException($"Sweep '{to.SweepId}' was cancelled.")),
            };
        if (Quarantined.TryGetValue(to.SweepId, out var why))
            return new Status.Failure(new ArgumentException($"Sweep '{to.SweepId}' is quarantined and does not run: {why}"));
        return Sweeps.ContainsKey(to.SweepId) ? null : new Status.Failure(new ArgumentException($"No sweep '{to.SweepId}' was submitted to this cluster."));
    }

    /// <summary>A page of the sweep list.</summary>
    public SweepList Page(GetSweeps get) => SweepPages.Page(get, Order, Sweeps, Quarantined, Unprepared, Cancelled);
}
