using System.Collections.Immutable;

namespace Scale.Actors.Sweeps;

/// <summary>One trial as the coordinator knows it.</summary>
internal sealed record TrialState(TrialSpec Spec, TrialStatus Status, int Attempt, int FailedAttempts, string? Trainer,
                                CheckpointRef? LastCheckpoint, TrialMetrics? Metrics, string? FailureReason)
{
    /// <summary>Scores during training by step (ascending; one point per step, the latest attempt's).</summary>
    public IReadOnlyList<ScorePoint> Curve { get; init; } = new List<ScorePoint>();   // a list, as it reads back from JSON

    /// <summary>Infrastructure faults in a row (disk full, I/O errors): they pause the trial and never spend its retry budget.</summary>
    public int InfrastructureFaults { get; init; }
    /// <summary>A paused trial is given to no trainer before this time (UTC).</summary>
    public DateTime? RetryAt { get; init; }
    /// <summary>The last infrastructure fault's reason.</summary>
    public string? PauseReason { get; init; }

    /// <summary>The scheduler's decisions at the rungs the trial reached, in order (the last one a stop when it was stopped).</summary>
    public IReadOnlyList<RungDecision> Decisions { get; init; } = new List<RungDecision>();

    /// <summary>The step the scheduler stopped the trial at, if it did.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public long? StoppedAt => Status == TrialStatus.Stopped ? Decisions.LastOrDefault(d => !d.Promoted)?.Step : null;

    /// <summary>Whether the trial waits out an infrastructure fault's backoff at <paramref name="now"/>.</summary>
    public bool PausedAt(DateTime now) => Status == TrialStatus.Pending && RetryAt is { } at && at > now;

    // Equal states have equal curves point for point (a record would compare the lists by reference).
    public bool Equals(TrialState? other)
        => other is not null && Spec == other.Spec && Status == other.Status && Attempt == other.Attempt && FailedAttempts == other.FailedAttempts
           && Trainer == other.Trainer && LastCheckpoint == other.LastCheckpoint && Metrics == other.Metrics && FailureReason == other.FailureReason
           && InfrastructureFaults == other.InfrastructureFaults && RetryAt == other.RetryAt && PauseReason == other.PauseReason
           && Curve.SequenceEqual(other.Curve) && Decisions.SequenceEqual(other.Decisions);

    public override int GetHashCode() => HashCode.Combine(Spec, Status, Attempt, Trainer, LastCheckpoint, Curve.Count);
}

/// <summary>
/// The sweep coordinator's state as a pure record: <see cref="Decide"/> turns a command into the events it
/// causes (none for a duplicate, late or stale message), <see cref="Apply"/> folds one event into the state.
/// The persistent actor only persists what Decide returns and applies it, so this is tested without actors.
/// </summary>
internal sealed record SweepState
{
    public static readonly SweepState Empty = new();

    public string? SweepId { get; init; }
    public ImmutableList<string> Order { get; init; } = [];
    public ImmutableDictionary<string, TrialState> Trials { get; init; } = ImmutableDictionary<string, TrialState>.Empty;
    public int MaxConcurrent { get; init; } = 1;
    /// <summary>Retries a trial gets after failed attempts before it is failed for good (0: none).</summary>
    public int RetryBudget { get; init; } = 2;

    /// <summary>The definition's fingerprint the sweep started with (null for journals from before fingerprints).</summary>
    public string? Fingerprint { get; init; }

    /// <summary>The early-stopping scheduler (null: every trial trains to its end).</summary>
    public SchedulerSpec? Scheduler { get; init; }

    /// <summary>Each trial's planned steps (empty for journals from before plans were sent: reports are then not bounded by them).</summary>
    public ImmutableDictionary<string, long> PlannedSteps { get; init; } = ImmutableDictionary<string, long>.Empty;

    public bool Started => SweepId is not null;
    public int Running => Trials.Values.Count(t => t.Status == TrialStatus.Running);
    public bool Finished => Started && Trials.Values.All(t => t.Status.IsEnded());

    /// <summary>The first pause after an infrastructure fault; it doubles with each fault in a row, up to <see cref="MaxPause"/>.</summary>
    public static readonly TimeSpan FirstPause = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan MaxPause = TimeSpan.FromMinutes(5);

    public static TimeSpan PauseAfter(int faultsInARow)
        => TimeSpan.FromSeconds(Math.Min(MaxPause.TotalSeconds, FirstPause.TotalSeconds * Math.Pow(2, Math.Max(0, faultsInARow - 1))));

    /// <summary>
    /// The events <paramref name="command"/> causes at <paramref name="now"/> (UTC; the clock when not given), which pauses
    /// are measured against. A command whose fields are out of range is refused (ArgumentException, answered as a failure)
    /// before it can reach the state: a peer or a bug must not leave a trial owned by nobody or a resume point at step −1.
    /// </summary>
    public IReadOnlyList<ISweepEvent> Decide(ISweepCommand command, DateTime? now = null)
    {
        Check(command);
        CheckPlan(command);
        return DecideChecked(command, now);
    }

    // A step beyond the trial's plan would freeze its resume point there (later checkpoints must move forward).
    private void CheckPlan(ISweepCommand command)
    {
        var (trial, step) = command switch
        {
            ReportCheckpoint c => (c.TrialId, c.Step),
            ReportScores s => (s.TrialId, s.Point.Step),
            _ => (null, 0L),
        };
        if (trial is not null && PlannedSteps.TryGetValue(trial, out var planned) && step > planned)
            throw new ArgumentException($"refused {command.GetType().Name}: step {step} is beyond trial {trial}'s plan of {planned} steps.");
    }

    /// <summary>The longest trainer id or trial id a command may carry (ids are short: node address, device, process).</summary>
    public const int MaxIdLength = 512;

    private static void Check(ISweepCommand command)
    {
        static void Require(bool ok, ISweepCommand command, string what)
        {
            if (!ok) throw new ArgumentException($"refused {command.GetType().Name}: {what}.");
        }
        static bool Id(string? id) => !string.IsNullOrWhiteSpace(id) && id.Length <= MaxIdLength;
        switch (command)
        {
            case RequestWork r:
                Require(Id(r.TrainerId), command, "the trainer id must be given (at most 512 characters)");
                Require(r.Slots is >= 1 and <= 1024, command, $"slots must be 1 to 1024, got {r.Slots}");
                break;
            case ITrialReport r:
                Require(Id(r.TrialId), command, "the trial id must be given");
                Require(r.Attempt >= 1, command, $"the attempt must be 1 or more, got {r.Attempt}");
                switch (r)
                {
                    case ReportCheckpoint c:
                        Require(c.Step >= 0, command, $"the step must be 0 or more, got {c.Step}");
                        Require(!string.IsNullOrWhiteSpace(c.Path), command, "the checkpoint's path must be given");
                        break;
                    case ReportScores sc:
                        Require(sc.Point is not null && sc.Point.Step >= 0, command, "the scores need a step of 0 or more");
                        break;
                    case ReportCompleted done:
                        Require(done.Metrics is not null, command, "the metrics must be given");
                        break;
                    case ReportFailed failed:
                        Require(failed.Reason is not null, command, "the reason must be given");
                        break;
                }
                break;
        }
    }

    private IReadOnlyList<ISweepEvent> DecideChecked(ISweepCommand command, DateTime? now) => command switch
    {
        StartSweep start => DecideStart(start),
        RequestWork request => DecideWork(request, now ?? DateTime.UtcNow),
        ReportFailed { Infrastructure: true } f when IsCurrent(f.TrialId, f.Attempt)
            => [new TrialPaused(f.TrialId, f.Attempt, f.Reason, (now ?? DateTime.UtcNow) + PauseAfter(Trials[f.TrialId].InfrastructureFaults + 1))],
        ReportCheckpoint c when IsCurrent(c.TrialId, c.Attempt) && c.Step > (Trials[c.TrialId].LastCheckpoint?.Step ?? -1)
            => [new TrialCheckpointed(c.TrialId, c.Attempt, c.Step, c.Path)],
        ReportScores s when IsCurrent(s.TrialId, s.Attempt) => DecideScores(s),
        ReportCompleted c when IsCurrent(c.TrialId, c.Attempt) => [new TrialCompleted(c.TrialId, c.Attempt, c.Metrics)],
        ReportFailed f when IsCurrent(f.TrialId, f.Attempt) => Trials[f.TrialId].FailedAttempts < RetryBudget
            ? [new TrialRetrying(f.TrialId, f.Attempt, f.Reason)]
            : [new TrialFailed(f.TrialId, f.Attempt, f.Reason)],
        TrainerLost lost => Requeue(t => t.Trainer == lost.TrainerId),
        RequeueOrphans orphans => Requeue(t => !orphans.LiveTrainers.Contains(t.Trainer!)),
        RequeueLostNodes nodes => Requeue(t => !nodes.LiveNodes.Any(node => t.Trainer!.StartsWith(node + "/", StringComparison.Ordinal))),
        _ => [],
    };

    public SweepState Apply(ISweepEvent @event) => @event switch
    {
        SweepStarted s => this with
        {
            SweepId = s.SweepId, MaxConcurrent = s.MaxConcurrent, RetryBudget = s.RetryBudget, Fingerprint = s.Fingerprint, Scheduler = s.Scheduler,
            PlannedSteps = s.PlannedSteps?.ToImmutableDictionary() ?? ImmutableDictionary<string, long>.Empty,
            Order = s.Trials.Select(t => t.Id).ToImmutableList(),
            Trials = s.Trials.ToImmutableDictionary(t => t.Id, t => new TrialState(t, TrialStatus.Pending, 0, 0, null, null, null, null)),
        },
        TrialStarted s => Update(s.TrialId, t => t with { Status = TrialStatus.Running, Attempt = s.Attempt, Trainer = s.TrainerId }),
        TrialPaused p => Update(p.TrialId, t => t with
        {
            Status = TrialStatus.Pending, Trainer = null, InfrastructureFaults = t.InfrastructureFaults + 1, RetryAt = p.RetryAt, PauseReason = p.Reason,
        }),
        // A checkpoint written means the storage works again: the next fault starts the backoff afresh.
        TrialCheckpointed c => Update(c.TrialId, t => t with { LastCheckpoint = new CheckpointRef(c.Step, c.Path), InfrastructureFaults = 0 }),
        TrialScored s => Update(s.TrialId, t => t with
        {
            Curve = t.Curve.Where(p => p.Step != s.Point.Step).Append(s.Point).OrderBy(p => p.Step).ToList(),
        }),
        TrialCompleted c => Update(c.TrialId, t => t with { Status = TrialStatus.Completed, Trainer = null, Metrics = c.Metrics }),
        TrialRetrying r => Update(r.TrialId, t => t with
        {
            Status = TrialStatus.Pending, Trainer = null, FailedAttempts = t.FailedAttempts + 1, FailureReason = r.Reason,
        }),
        TrialFailed f => Update(f.TrialId, t => t with
        {
            Status = TrialStatus.Failed, Trainer = null, FailedAttempts = t.FailedAttempts + 1, FailureReason = f.Reason,
        }),
        TrialRequeued r => Update(r.TrialId, t => t with { Status = TrialStatus.Pending, Trainer = null }),
        TrialPromoted p => Update(p.TrialId, t => t with { Decisions = [.. t.Decisions, p.Decision] }),
        // A stopped trial's scores are those of the step it stopped at: its last point, which the same command recorded.
        TrialStopped s => Update(s.TrialId, t => t with
        {
            Status = TrialStatus.Stopped, Trainer = null, Decisions = [.. t.Decisions, s.Decision],
            Metrics = t.Curve.LastOrDefault(p => p.Step == s.Decision.Step) is { } at
                ? new TrialMetrics(at.Scores) { Metric = at.Metric }
                : t.Metrics,
        }),
        _ => throw new ArgumentException($"Unknown sweep event {@event.GetType().Name}."),
    };

    /// <summary>Folds a whole history, as recovery does.</summary>
    public static SweepState Replay(IEnumerable<ISweepEvent> events) => events.Aggregate(Empty, (state, e) => state.Apply(e));

    private IReadOnlyList<ISweepEvent> DecideStart(StartSweep start)
    {
        if (Started) return [];   // the same sweep submitted again (a resume): nothing new happens
        if (start.Trials.Count == 0) throw new ArgumentException("A sweep needs at least one trial.");
        if (start.Trials.Select(t => t.Id).Distinct().Count() != start.Trials.Count) throw new ArgumentException("Trial ids must be unique.");
        if (start.MaxConcurrent < 1) throw new ArgumentException($"max concurrent trials must be at least 1, got {start.MaxConcurrent}.");
        if (start.RetryBudget < 0) throw new ArgumentException($"the retry budget must be zero or more, got {start.RetryBudget}.");
        if (start.PlannedSteps is { } planned
            && (planned.Count != start.Trials.Count || start.Trials.Any(t => !planned.TryGetValue(t.Id, out var steps) || steps < 1)))
            throw new ArgumentException("the planned steps must name every trial once, each with 1 step or more.");
        return
        [
            new SweepStarted(start.SweepId, start.Trials, start.MaxConcurrent, start.RetryBudget)
            {
                Fingerprint = start.Fingerprint, Scheduler = start.Scheduler, PlannedSteps = start.PlannedSteps,
            },
        ];
    }

    /// <summary>
    /// A score during training is recorded; with a scheduler, a score at a rung the trial has not been decided at (and before
    /// its last step) is also ranked against every score recorded at that rung, its own included: promoted or stopped.
    /// A resumed attempt reaching a rung again is not decided twice.
    /// </summary>
    private IReadOnlyList<ISweepEvent> DecideScores(ReportScores report)
    {
        var scored = new TrialScored(report.TrialId, report.Attempt, report.Point);
        if (Scheduler is not { } scheduler || scheduler.RungAt(report.Point.Step) is not { } rung) return [scored];
        if (report.Point.TotalSteps is { } total && report.Point.Step >= total) return [scored];
        if (Trials[report.TrialId].Decisions.Any(d => d.Rung == rung)) return [scored];
        if (scheduler.ScoreOf(report.Point) is not { } score || double.IsNaN(score)) return [scored];
        var recorded = Order.SelectMany(id => Trials[id].Decisions).Where(d => d.Rung == rung).Select(d => d.Score).Append(score).ToList();
        double cutoff = scheduler.Cutoff(recorded);
        var decision = new RungDecision(rung, report.Point.Step, score, cutoff, scheduler.Promotes(score, cutoff));
        return [scored, decision.Promoted ? new TrialPromoted(report.TrialId, report.Attempt, decision) : new TrialStopped(report.TrialId, report.Attempt, decision)];
    }

    private IReadOnlyList<ISweepEvent> Requeue(Func<TrialState, bool> lost)
        => Order.Select(id => Trials[id])
            .Where(t => t.Status == TrialStatus.Running && lost(t))
            .Select(t => (ISweepEvent)new TrialRequeued(t.Spec.Id, t.Attempt, t.Trainer!)).ToList();

    /// <summary>
    /// The first pending trial in sweep order that is not paused at <paramref name="now"/>, if the sweep's concurrency limit
    /// and the trainer's free slots allow one more.
    /// </summary>
    private IReadOnlyList<ISweepEvent> DecideWork(RequestWork request, DateTime now)
    {
        if (request.Running is { } running)
        {
            // Trials granted to this trainer that it does not know it runs (the grant's answer was lost) are pending again first.
            var forgotten = Requeue(t => t.Trainer == request.TrainerId && !running.Contains(t.Spec.Id));
            if (forgotten.Count > 0)
            {
                var after = forgotten.Aggregate(this, (state, e) => state.Apply(e));
                return [.. forgotten, .. after.DecideWork(request with { Running = null }, now)];
            }
        }
        if (!Started || Running >= MaxConcurrent) return [];
        if (Trials.Values.Count(t => t.Status == TrialStatus.Running && t.Trainer == request.TrainerId) >= request.Slots) return [];
        var next = Order.Select(id => Trials[id]).FirstOrDefault(t => t.Status == TrialStatus.Pending && !t.PausedAt(now));
        return next is null ? [] : [new TrialStarted(next.Spec.Id, next.Attempt + 1, request.TrainerId)];
    }

    /// <summary>A report counts only for the running attempt it names; anything else is a duplicate or arrives late.</summary>
    public bool IsCurrent(string trialId, int attempt)
        => Trials.TryGetValue(trialId, out var trial) && trial.Status == TrialStatus.Running && trial.Attempt == attempt;

    private SweepState Update(string trialId, Func<TrialState, TrialState> change)
        => Trials.TryGetValue(trialId, out var trial)
            ? this with { Trials = Trials.SetItem(trialId, change(trial)) }
            : throw new InvalidOperationException($"Event for unknown trial '{trialId}'.");
}
