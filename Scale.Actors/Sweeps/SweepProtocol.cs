using Scale.Model.Experiments;

namespace Scale.Actors.Sweeps;

/// <summary>
/// A trial's place in its life: pending → running → completed, or back to pending on a retry, or failed for good, or
/// stopped early by the sweep's scheduler (ASHA) at a rung.
/// </summary>
internal enum TrialStatus { Pending, Running, Completed, Failed, Stopped }

internal static class TrialStatuses
{
    /// <summary>Whether a trial in <paramref name="status"/> runs no more.</summary>
    public static bool IsEnded(this TrialStatus status) => status is TrialStatus.Completed or TrialStatus.Failed or TrialStatus.Stopped;
}

/// <summary>What a trial runs: a method and its hyper-parameters.</summary>
internal sealed record TrialSpec(string Id, string Method, IReadOnlyDictionary<string, string> Parameters);

/// <summary>A trial's scores at one step of its training (the sweep's evaluate-every): the points of its score curve.</summary>
internal sealed record ScorePoint(long Step, Scores Scores)
{
    /// <summary>The steps the trial trains in all (a scheduler decides nothing at the last); absent in journals from before schedulers.</summary>
    public long? TotalSteps { get; init; }
    /// <summary>The scores' metric (Scale.Model.Experiments.ScoreMetric); absent in journals from before schedulers.</summary>
    public string? Metric { get; init; }
}

/// <summary>The last checkpoint a trial reported: it resumes from here after a retry or a lost trainer.</summary>
internal sealed record CheckpointRef(long Step, string Path);

/// <summary>A finished trial's scores (retention, acquisition, forgetting as docs/method.md defines them) and what it cost.</summary>
internal sealed record TrialMetrics(Scores Scores)
{
    /// <summary>
    /// The scores' metric (Scale.Model.Experiments.ScoreMetric: recall, higher is better; perplexity, lower is better).
    /// Journals from before it was recorded hold recall sweeps only, so absent means recall.
    /// </summary>
    public string? Metric { get; init; }
    [System.Text.Json.Serialization.JsonIgnore] public bool LowerIsBetter => Scale.Model.Experiments.ScoreMetric.LowerIsBetter(Metric);
    /// <summary>The base's score on the old data (forgetting's reference); absent in journals from before it was recorded.</summary>
    public double? BaseOld { get; init; }
    /// <summary>Loss of the last training step (null when nothing trains, as for the frozen base).</summary>
    public double? FinalLoss { get; init; }
    public long TrainableParameters { get; init; }
    public double TokensPerSecond { get; init; }
    /// <summary>Seconds spent in training steps by the attempt that finished (steps of earlier attempts are not counted).</summary>
    public double TrainSeconds { get; init; }
    public double EvaluationSeconds { get; init; }
    public double CheckpointSeconds { get; init; }
    public IReadOnlyDictionary<string, double>? RetentionByAttribute { get; init; }
    public IReadOnlyDictionary<string, double>? AcquisitionByAttribute { get; init; }
    /// <summary>The trained weights scored again under each of the sweep's routing rules (rule → scores); SCALE trials only.</summary>
    public IReadOnlyDictionary<string, RoutedScores>? Routed { get; init; }
    /// <summary>The matrix products' kernel path the finishing attempt trained on (Scale.Model.Native.MklKernels); absent in journals from before it was recorded.</summary>
    public string? Kernels { get; init; }
    /// <summary>fp32, or bf16 (mixed precision) for the finishing attempt; absent in journals from before it was recorded (fp32).</summary>
    public string? Precision { get; init; }
    /// <summary>The trial's own routing rule's calibrated threshold (a SCALE-Route trial with a novelty-auto rule); absent otherwise.</summary>
    public double? RoutingThreshold { get; init; }
    /// <summary>Parameters the trial holds beyond the shared frozen base; absent in journals from before it was recorded.</summary>
    public long? ResidentParameters { get; init; }
}

/// <summary>A trained trial's scores under one routing rule (no training: the same weights, answered per token by the rule).</summary>
internal sealed record RoutedScores(Scores Scores)
{
    /// <summary>A novelty-auto rule's threshold in nats, calibrated on the old data; absent for other rules and in older journals.</summary>
    public double? Threshold { get; init; }
    /// <summary>What routing costs: parameters the trial holds beyond the shared base, blocks run per token for both heads (in base passes), and the seconds its scoring took. Absent in older journals.</summary>
    public long? ResidentParameters { get; init; }
    public double? BlockPasses { get; init; }
    public double? EvaluationSeconds { get; init; }
}

// Commands (imperative): what the coordinator is asked to do.
internal interface ISweepCommand;
internal sealed record StartSweep(string SweepId, IReadOnlyList<TrialSpec> Trials, int MaxConcurrent, int RetryBudget) : ISweepCommand
{
    /// <summary>A hash of what the trials run on (the experiment and checkpoint interval): a resumed sweep must match it.</summary>
    public string? Fingerprint { get; init; }
    /// <summary>The early-stopping scheduler (null: every trial trains to its end).</summary>
    public SchedulerSpec? Scheduler { get; init; }
    /// <summary>
    /// Each trial's planned training steps, by trial id: a checkpoint or score reported beyond them is refused, so that no
    /// reporter can move a resume point past the plan (null: not bounded, as in journals written before plans were sent).
    /// </summary>
    public IReadOnlyDictionary<string, long>? PlannedSteps { get; init; }
}
/// <summary>
/// A trainer with <paramref name="Slots"/> trial slots asks for one more trial. A trainer that names the trials it
/// is <see cref="Running"/> (cluster trainers do) gets back, as pending, any trial the coordinator thinks it runs but
/// it does not — a grant whose answer was lost on the way.
/// </summary>
internal sealed record RequestWork(string TrainerId, int Slots = 1) : ISweepCommand
{
    public IReadOnlyList<string>? Running { get; init; }
}
/// <summary>A trainer's report on one attempt of a trial: it counts only while that attempt is the trial's running one.</summary>
internal interface ITrialReport : ISweepCommand
{
    string TrialId { get; }
    int Attempt { get; }
}
internal sealed record ReportCheckpoint(string TrialId, int Attempt, long Step, string Path) : ITrialReport;
internal sealed record ReportScores(string TrialId, int Attempt, ScorePoint Point) : ITrialReport;
internal sealed record ReportCompleted(string TrialId, int Attempt, TrialMetrics Metrics) : ITrialReport;
internal sealed record ReportFailed(string TrialId, int Attempt, string Reason) : ITrialReport
{
    /// <summary>The attempt failed for a reason outside the trial (disk full, an I/O error: <see cref="Trainers.Faults"/>), not because of what it trains.</summary>
    public bool Infrastructure { get; init; }
}
internal sealed record TrainerLost(string TrainerId) : ISweepCommand;
/// <summary>Every running trial whose trainer is not among <paramref name="LiveTrainers"/> is pending again (a restarted process).</summary>
internal sealed record RequeueOrphans(IReadOnlyList<string> LiveTrainers) : ISweepCommand;

/// <summary>
/// Every running trial whose trainer is not on one of <paramref name="LiveNodes"/> is pending again: cluster
/// trainers are named "{node address}/{device}", and a node that left or was downed runs nothing any more.
/// </summary>
internal sealed record RequeueLostNodes(IReadOnlyList<string> LiveNodes) : ISweepCommand;

// Events (past tense): what happened, persisted in order; the state is their fold.
internal interface ISweepEvent;
internal sealed record SweepStarted(string SweepId, IReadOnlyList<TrialSpec> Trials, int MaxConcurrent, int RetryBudget) : ISweepEvent
{
    /// <summary>See <see cref="StartSweep.Fingerprint"/>; absent in journals written before it existed.</summary>
    public string? Fingerprint { get; init; }
    /// <summary>See <see cref="StartSweep.Scheduler"/>; absent in journals written before schedulers.</summary>
    public SchedulerSpec? Scheduler { get; init; }
    /// <summary>See <see cref="StartSweep.PlannedSteps"/>; absent in journals written before plans were sent.</summary>
    public IReadOnlyDictionary<string, long>? PlannedSteps { get; init; }
}
internal sealed record TrialStarted(string TrialId, int Attempt, string TrainerId) : ISweepEvent;
internal sealed record TrialCheckpointed(string TrialId, int Attempt, long Step, string Path) : ISweepEvent;
/// <summary>A trial's scores during training; a point at a step already scored (an attempt resumed before it) replaces it.</summary>
internal sealed record TrialScored(string TrialId, int Attempt, ScorePoint Point) : ISweepEvent;
internal sealed record TrialCompleted(string TrialId, int Attempt, TrialMetrics Metrics) : ISweepEvent;
/// <summary>A failed attempt with budget left: the trial is pending again and resumes from its last checkpoint.</summary>
internal sealed record TrialRetrying(string TrialId, int Attempt, string Reason) : ISweepEvent;
/// <summary>A failed attempt that used the last of the trial's budget: the trial is failed for good.</summary>
internal sealed record TrialFailed(string TrialId, int Attempt, string Reason) : ISweepEvent;
/// <summary>
/// An attempt hit an infrastructure fault (disk full, an I/O error): the trial is paused — pending again, but given to no
/// trainer before <paramref name="RetryAt"/> (backoff doubling per fault in a row) — without spending its retry budget.
/// </summary>
internal sealed record TrialPaused(string TrialId, int Attempt, string Reason, DateTime RetryAt) : ISweepEvent;
/// <summary>The trainer running the trial was lost (process or node): pending again, without spending the trial's budget.</summary>
internal sealed record TrialRequeued(string TrialId, int Attempt, string TrainerId) : ISweepEvent;
/// <summary>The scheduler compared the trial's score at a rung with the rung's cutoff and let it train on.</summary>
internal sealed record TrialPromoted(string TrialId, int Attempt, RungDecision Decision) : ISweepEvent;
/// <summary>The scheduler stopped the trial at a rung (its score missed the cutoff): it trains no more, and its scores are those of that step.</summary>
internal sealed record TrialStopped(string TrialId, int Attempt, RungDecision Decision) : ISweepEvent;
