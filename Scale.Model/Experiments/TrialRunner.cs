using System.Diagnostics;
using System.Runtime.CompilerServices;
using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Training;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using static TorchSharp.torch;

namespace Scale.Model.Experiments;

/// <summary>What training a trial produced: the last loss, its cost, and the checkpoint of its final weights (none when nothing trains).</summary>
internal sealed record TrialTraining(long Steps, double FinalLoss, long TrainableParameters, double TokensPerSecond,
                                   double TrainSeconds, string? FinalCheckpoint)
{
    /// <summary>Seconds spent writing checkpoints (not in <see cref="TrainSeconds"/>).</summary>
    public double CheckpointSeconds { get; init; }
    /// <summary>Seconds spent scoring during training (evaluate-every; not in <see cref="TrainSeconds"/>).</summary>
    public double ScoringSeconds { get; init; }
}

/// <summary>A trial's scores on the old and new data, and how long scoring took.</summary>
internal sealed record TrialScores(Scores Scores, double Seconds)
{
    /// <summary>The scores' metric, which says which direction is better (<see cref="ScoreMetric"/>).</summary>
    public string Metric { get; init; } = ScoreMetric.Recall;
    /// <summary>The base's score on the old data, which forgetting is measured against.</summary>
    public double? BaseOld { get; init; }
    /// <summary>Retention and acquisition per attribute (biography recall only).</summary>
    public IReadOnlyDictionary<string, double>? RetentionByAttribute { get; init; }
    public IReadOnlyDictionary<string, double>? AcquisitionByAttribute { get; init; }
    /// <summary>The rule the answers were routed by (null: not routed), and novelty-auto's calibrated threshold in nats.</summary>
    public string? Routing { get; init; }
    public double? RoutingThreshold { get; init; }
    /// <summary>Parameters the trial holds beyond the shared frozen base (its expansion, adapters, inserted blocks, or private copy).</summary>
    public long ResidentParameters { get; init; }
    /// <summary>Blocks run per token to answer, in passes of the base's blocks (both heads' when routed).</summary>
    public double BlockPasses { get; init; } = 1;
}

/// <summary>A score, with its parts per attribute and its first-token accuracy where the metric has them.</summary>
internal sealed record Score(double Value, IReadOnlyDictionary<string, double>? ByAttribute = null, double? FirstToken = null);

/// <summary>
/// The metrics trials are scored on, by name, and their direction: attribute recall (higher is better) and held-out
/// perplexity (lower is better). Results carry the name, so rankings, fronts and forgetting read the right way.
/// </summary>
internal static class ScoreMetric
{
    public const string Recall = "recall";
    public const string Perplexity = "perplexity";
    /// <summary>Hard first-token accuracy on questions (the `bio-qa` protocol): Task 0 as retention, Task 1 as acquisition.</summary>
    public const string FirstToken = "first-token";

    public static Direction DirectionOf(string? metric) => metric == Perplexity ? Direction.LowerIsBetter : Direction.HigherIsBetter;

    public static bool LowerIsBetter(string? metric) => DirectionOf(metric) == Direction.LowerIsBetter;

    /// <summary>How much better <paramref name="a"/> is than <paramref name="b"/> (positive: better) on <paramref name="metric"/>.</summary>
    public static double Gain(string? metric, double a, double b) => DirectionOf(metric).Gain(a, b);

    /// <summary>The points no other point beats on both scores (better by <paramref name="metric"/>'s direction).</summary>
    public static IReadOnlyList<T> ParetoFront<T>(IReadOnlyList<T> points, string? metric, Func<T, double> retention, Func<T, double> acquisition)
    {
        bool Beats(T q, T p)
        {
            double r = Gain(metric, retention(q), retention(p)), a = Gain(metric, acquisition(q), acquisition(p));
            return r >= 0 && a >= 0 && (r > 0 || a > 0);
        }
        return points.Where(p => !points.Any(q => Beats(q, p))).DistinctBy(p => (retention(p), acquisition(p))).OrderBy(retention).ToList();
    }

    public static string Describe(string? metric) => metric switch
    {
        Perplexity => "held-out perplexity (lower is better)",
        FirstToken => "first-token accuracy of answers (higher is better)",
        _ => "attribute recall (higher is better)",
    };

    /// <summary>What retention and acquisition are on <paramref name="metric"/>, in words (axis labels, report headers).</summary>
    public static (string Retention, string Acquisition) Sides(string? metric) => metric switch
    {
        Perplexity => ("perplexity of the old text", "perplexity of the new text"),
        FirstToken => ("Task 0: first-token accuracy on A's questions", "Task 1: first-token accuracy on B's questions"),
        _ => ("recall of the old people", "recall of the new people"),
    };
}

/// <summary>A trial's end: its scores on the old and new populations and what it cost.</summary>
internal sealed record TrialOutcome(long Steps, double FinalLoss, Scores Scores, long TrainableParameters, double TokensPerSecond);

/// <summary>Where a trial's batches come from: the (B, T + 1) int64 batch of a step, the same wherever it is computed.</summary>
internal interface IBatchSource
{
    Tensor BatchAt(long step);
}

/// <summary>How a trained model is scored: retention on the old data, acquisition on the new, and forgetting against the base.</summary>
internal sealed class TrialScoring(Func<CausalLM, Score> old, Func<CausalLM, Score> @new, double baseOld, string metric)
{
    public double BaseOld { get; } = baseOld;
    public string Metric { get; } = metric;
    public bool LowerIsBetter => ScoreMetric.LowerIsBetter(Metric);

    /// <summary>The old data's calibration slice (novelty-auto routing), disjoint from the held-out data retention is scored on; null: none.</summary>
    public ITokenWindows? Calibration { get; set; }

    /// <summary>The experiment's task suites, scored on every final model (and during training when they ask); null: none.</summary>
    public TaskSuites? Tasks { get; set; }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<(double Quantile, int Window), Lazy<double>> thresholds = new();

    /// <summary>
    /// <paramref name="routing"/> ready to route: a novelty-auto rule gets its threshold from the calibration slice, read by
    /// <paramref name="baseModel"/> once per quantile and window and kept for every later trial; any other rule as it is.
    /// </summary>
    public RoutingSpec Calibrate(RoutingSpec routing, CausalLM baseModel)
    {
        if (!routing.NeedsCalibration) return routing;
        var slice = Calibration ?? throw new ArgumentException($"routing {routing} calibrates on the old data's calibration slice, and this experiment has none.");
        var threshold = thresholds.GetOrAdd((routing.Threshold, routing.Window),
            key => new Lazy<double>(() => RoutingCalibration.Threshold(baseModel, slice, key.Quantile, key.Window))).Value;
        return routing with { Calibrated = threshold };
    }
    public double Old(CausalLM model) => old(model).Value;
    public double New(CausalLM model) => @new(model).Value;
    public Score OldDetailed(CausalLM model) => old(model);
    public Score NewDetailed(CausalLM model) => @new(model);
    /// <summary>How much worse than the base the old data scores: base − retention for recall, retention − base for perplexity.</summary>
    public double Forgetting(double retention) => ScoreMetric.Gain(Metric, BaseOld, retention);

    /// <summary>Attribute recall on the old and new populations' prompts.</summary>
    public static TrialScoring Recall(ITokenizer tokenizer, IReadOnlyList<BioPrompt> oldPrompts, IReadOnlyList<BioPrompt> newPrompts, double baseOld,
                                      BioLanguage oldLanguage = BioLanguage.English, BioLanguage newLanguage = BioLanguage.English)
        => new(m => Detailed(RecallOf(m, tokenizer, oldPrompts, oldLanguage)),
               m => Detailed(RecallOf(m, tokenizer, newPrompts, newLanguage)), baseOld, ScoreMetric.Recall);

    /// <summary>
    /// Recall of one language's prompts: teacher-forced for English (exactly greedy decoding's answer, in one pass);
    /// by generating the text for Korean, whose particles attach to the value and change its tokens (<see cref="Metrics.AttributeRecall"/>).
    /// </summary>
    public static RecallReport RecallOf(CausalLM model, ITokenizer tokenizer, IReadOnlyList<BioPrompt> prompts, BioLanguage language)
        => language == BioLanguage.Korean
            ? Metrics.AttributeRecall(model, tokenizer, prompts, particlesFollow: true)
            : TeacherForcedRecall.Measure(model, tokenizer, prompts);

    /// <summary>
    /// Hard first-token accuracy on questions (the `bio-qa` protocol): Task 0's questions for retention, Task 1's for
    /// acquisition. Per attribute, the first-token accuracy too.
    /// </summary>
    public static TrialScoring FirstTokenAccuracy(ITokenizer tokenizer, IReadOnlyList<BioPrompt> task0, IReadOnlyList<BioPrompt> task1, double baseOld)
        => new(m => FirstTokenScore(TeacherForcedRecall.Measure(m, tokenizer, task0)),
               m => FirstTokenScore(TeacherForcedRecall.Measure(m, tokenizer, task1)), baseOld, ScoreMetric.FirstToken);

    public static Score FirstTokenScore(RecallReport report)
        => new(report.FirstTokenAccuracy, report.PerAttribute.ToDictionary(a => a.Attribute.ToString(), a => a.FirstTokenAccuracy), report.FirstTokenAccuracy);

    private static Score Detailed(RecallReport report)
        => new(report.Recall, report.PerAttribute.ToDictionary(a => a.Attribute.ToString(), a => a.Recall), report.FirstTokenAccuracy);

    /// <summary>Held-out perplexity on the old and new corpora.</summary>
    public static TrialScoring Perplexity(ITokenWindows oldHeldOut, ITokenWindows newHeldOut, double baseOld)
        => new(m => new Score(Metrics.Perplexity(m, oldHeldOut)), m => new Score(Metrics.Perplexity(m, newHeldOut)), baseOld, ScoreMetric.Perplexity);
}

/// <summary>
/// Runs one trial on a shared, frozen base: builds the method's model from the trial's seed, resumes from a
/// trial checkpoint when given one (trainable tensors, optimiser state, step; the batches follow from the
/// step), trains to the end with a checkpoint every <see cref="TrialPlan.CheckpointEvery"/> steps and a "final"
/// one at the end; scoring loads the final weights on the base again. A resumed trial ends bit-for-bit where an
/// uninterrupted one does. Two rolling checkpoints are kept, "latest" and "previous": when the one to resume from
/// is damaged, the trial falls back to the other, then to the start, so a corrupt file costs steps, never the trial.
/// </summary>
internal sealed class TrialRunner(Decoder baseModel, ITokenWindows train, TrialScoring scoring)
{
    public const string Latest = "latest";
    public const string Previous = "previous";
    public const string Final = "final";

    public TrialRunner(Decoder baseModel, ITokenizer tokenizer, ITokenWindows train,
                       IReadOnlyList<BioPrompt> oldPrompts, IReadOnlyList<BioPrompt> newPrompts, double baseOld)
        : this(baseModel, train, TrialScoring.Recall(tokenizer, oldPrompts, newPrompts, baseOld))
    {
    }

    public Decoder Base => baseModel;
    public ITokenWindows TrainData => train;
    public TrialScoring Scoring => scoring;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Device, ScalarType? Precision), Lazy<Decoder>> placed = new();

    /// <summary>The reduced type this runner's linear maps compute in (<see cref="Autocast"/>), or null for fp32.</summary>
    public ScalarType? Precision { get; private init; }

    /// <summary>
    /// This runner with its frozen base resident on <paramref name="device"/>: the same runner on the base's own device
    /// (at full precision), else one whose base is copied there once and shared by every trial and evaluation on that
    /// device. Trials build their tensors on their runner's device; batches and scoring inputs follow the model.
    /// With <paramref name="precision"/> (bf16), its trials train and score under <see cref="Autocast"/>.
    /// </summary>
    public TrialRunner On(Device device, ScalarType? precision = null)
    {
        bool here = Devices.Key(device) == Devices.Key(baseModel.Device);
        if (here && precision == Precision) return this;
        if (here && precision is null) return new TrialRunner(baseModel, train, scoring);
        var resident = placed.GetOrAdd((Devices.Key(device), precision), _ => new Lazy<Decoder>(() =>
        {
            // One resident base per device and precision: in bf16 the frozen matrices are held in bf16 (half the memory, no cast per step).
            if (precision is not { } reduced) return baseModel.On(device);
            if (here) return baseModel.Reduced(reduced);
            using var full = baseModel.On(device);
            return full.Reduced(reduced);
        })).Value;
        return new TrialRunner(resident, train, scoring) { Precision = precision };
    }

    /// <summary>Frees the base copies made by <see cref="On"/> (the runner's own base belongs to whoever gave it).</summary>
    public void ReleaseDevices()
    {
        foreach (var copy in placed.Values.Where(r => r.IsValueCreated)) copy.Value.Dispose();
        placed.Clear();
    }

    /// <summary>Trains and scores in one go.</summary>
    public TrialOutcome Run(TrialPlan plan, string checkpointDirectory, string? resumeFrom = null,
                            Action<StepResult>? onStep = null, Action<string, long>? onCheckpoint = null,
                            CancellationToken cancellation = default, Action<string>? onNotice = null)
    {
        var trained = Train(plan, checkpointDirectory, resumeFrom, null, onStep, onCheckpoint, cancellation, onNotice);
        var scores = Evaluate(plan, trained.FinalCheckpoint);
        return new TrialOutcome(trained.Steps, trained.FinalLoss, scores.Scores, trained.TrainableParameters, trained.TokensPerSecond);
    }

    /// <summary>The local batch of a step: what a <see cref="IBatchSource"/> must reproduce.</summary>
    public Tensor LocalBatch(TrialPlan plan, long step) => train.Batch(new BatchSchedule(train.Count, plan.Phase.Batch, plan.Seed).IndicesFor(step));

    public TrialTraining Train(TrialPlan plan, string checkpointDirectory, string? resumeFrom = null, IBatchSource? batches = null,
                               Action<StepResult>? onStep = null, Action<string, long>? onCheckpoint = null,
                               CancellationToken cancellation = default, Action<string>? onNotice = null, Action<long, TrialScores>? onScores = null,
                               int? attempt = null, LockStepGroups? lockStep = null, CancellationToken checkpointThenStop = default)
    {
        if (plan.CheckpointEvery < 1) throw new ArgumentException($"checkpoint_every must be at least 1, got {plan.CheckpointEvery}.");
        // A sweep's attempt claims the trial's directory: a superseded attempt still running elsewhere can no longer publish there.
        CheckpointFence? fence = null;
        if (attempt is { } current)
        {
            fence = new CheckpointFence(checkpointDirectory, current);
            fence.Claim();
        }
        using var cast = Autocast.Enter(Precision);
        var model = plan.Method.Build(baseModel, plan.Seed);
        // A SCALE-Route trial's rule, calibrated before anything routes: its scores during training, or its loss (route_in_loss).
        bool routesNow = onScores is not null && plan.EvaluateEvery > 0 || plan.Method.Expansion?.RouteInLoss == true;
        if (routesNow && model is ScaleDecoder { Routing: { } rule } routedScale) routedScale.Routing = scoring.Calibrate(rule, baseModel);
        try
        {
            long trainable = model.TrainableParameterCount();
            if (trainable == 0) return new TrialTraining(0, double.NaN, 0, 0, 0, null);
            using var session = new TrainingSession(model, plan.Options);
            var restored = resumeFrom is null ? null : Resume(session, resumeFrom, onNotice);
            var schedule = new BatchSchedule(train.Count, plan.Phase.Batch, plan.Seed);
            // Trials that read the same batches (this runner's data, the batch size and the seed that orders them) and take
            // the base's stream from below their first W12 step together, sharing the base's forward (LockStepGroups).
            using var member = lockStep is not null && model.TraceDepth > 0 && plan.Options.AccumulationSteps == 1
                ? lockStep.Join(baseModel, $"{RuntimeHelpers.GetHashCode(train)}|batch={plan.Phase.Batch}|seed={plan.Seed}", model.TraceDepth, session.Step)
                : null;
            double seconds = 0, checkpointSeconds = 0, scoringSeconds = 0, lastLoss = restored?.LastLoss ?? double.NaN;
            long trained = 0, saved = session.Step;   // saved: the step the latest checkpoint (or the resume point) holds
            void ScoreNow()
            {
                var scoringClock = Stopwatch.StartNew();
                onScores!(session.Step, Score(model, scoringClock, final: false));
                scoringSeconds += scoringClock.Elapsed.TotalSeconds;
            }
            bool scoring = onScores is not null && plan.EvaluateEvery > 0;
            // The curve's first point: the trial before any step (for every method here, the base's own scores).
            if (scoring && session.Step == 0) ScoreNow();
            void SaveLatest()
            {
                var saving = Stopwatch.StartNew();
                var path = Path.Combine(checkpointDirectory, Latest);
                TrialCheckpoint.Save(path, session, dataPosition: session.Step, lastLoss, fence, rotateTo: Path.Combine(checkpointDirectory, Previous));
                checkpointSeconds += saving.Elapsed.TotalSeconds;
                saved = session.Step;
                onCheckpoint?.Invoke(path, session.Step);
            }
            for (long step = session.Step; step < plan.Phase.Steps; step++)
            {
                // A drain (the process is told to stop): the steps since the last checkpoint are kept, then the trial stops.
                if (checkpointThenStop.IsCancellationRequested)
                {
                    if (session.Step > saved) SaveLatest();
                    throw new OperationCanceledException("stopped after checkpointing", checkpointThenStop);
                }
                cancellation.ThrowIfCancellationRequested();
                using var batch = batches?.BatchAt(step) ?? train.Batch(schedule.IndicesFor(step));
                var clock = Stopwatch.StartNew();
                var result = member is null ? session.TrainStep([batch]) : member.TrainStep(session, batch, step, cancellation);
                member?.Stepped(step);
                seconds += clock.Elapsed.TotalSeconds;
                (lastLoss, trained) = (result.Loss, trained + 1);
                onStep?.Invoke(result);
                // Scores during training: the weights as they are at this step, scored without autograd (nothing in the
                // model or the optimiser changes, so the run goes on exactly as it would without them).
                if (scoring && session.Step % plan.EvaluateEvery == 0) ScoreNow();
                if (session.Step % plan.CheckpointEvery != 0 || session.Step == plan.Phase.Steps) continue;
                SaveLatest();
            }
            var final = Path.Combine(checkpointDirectory, Final);
            bool resumedAtFinal = resumeFrom is not null && Path.GetFullPath(final) == Path.GetFullPath(resumeFrom);
            var finalClock = Stopwatch.StartNew();
            if (!resumedAtFinal || trained > 0)
                TrialCheckpoint.Save(final, session, dataPosition: session.Step, lastLoss, fence);
            checkpointSeconds += finalClock.Elapsed.TotalSeconds;
            onCheckpoint?.Invoke(final, session.Step);
            return new TrialTraining(plan.Phase.Steps, lastLoss, trainable,
                                     seconds > 0 ? plan.Phase.TokensPerStep * trained / seconds : 0, seconds, final)
            { CheckpointSeconds = checkpointSeconds, ScoringSeconds = scoringSeconds };
        }
        finally
        {
            if (plan.Method.Kind != MethodKind.Frozen) TrialModels.ReleaseOwnTensors(model, baseModel);
        }
    }

    /// <summary>
    /// Scores the trial's weights from <paramref name="checkpoint"/> (none: the method as built, e.g. the frozen base), routed
    /// by the plan's rule when it has one (a novelty-auto rule calibrated first on the old data's calibration slice).
    /// </summary>
    public TrialScores Evaluate(TrialPlan plan, string? checkpoint)
    {
        var clock = Stopwatch.StartNew();
        using var cast = Autocast.Enter(Precision);
        var trained = plan.Method.Build(baseModel, plan.Seed);
        try
        {
            if (checkpoint is not null) TrialCheckpoint.LoadWeights(checkpoint, trained);
            var routing = plan.Method.Routing is { } rule ? scoring.Calibrate(rule, baseModel) : null;
            var model = routing is null ? trained : MethodSpec.Route(trained, baseModel, routing);
            var shared = baseModel.parameters().Select(p => p.Handle).ToHashSet();
            return Score(model, clock, final: true) with
            {
                Routing = routing?.ToString(), RoutingThreshold = routing?.Calibrated,
                ResidentParameters = trained.DistinctParameters().Where(p => !shared.Contains(p.Parameter.Handle)).Sum(p => p.Parameter.numel()),
                BlockPasses = plan.Method.BlockPasses(baseModel.Config.NumLayers),
            };
        }
        finally
        {
            if (plan.Method.Kind != MethodKind.Frozen) TrialModels.ReleaseOwnTensors(trained, baseModel);
        }
    }

    /// <summary>The model's scores; the task suites on <paramref name="final"/> weights, and during training only when they ask.</summary>
    private TrialScores Score(CausalLM model, Stopwatch clock, bool final)
    {
        using var noGrad = TorchSharp.torch.no_grad();
        var (retention, acquisition) = (scoring.OldDetailed(model), scoring.NewDetailed(model));
        var scores = new Scores(retention.Value, acquisition.Value, scoring.Forgetting(retention.Value))
        {
            RetentionFirstToken = retention.FirstToken, AcquisitionFirstToken = acquisition.FirstToken,
            Tasks = scoring.Tasks is { } tasks && (final || tasks.EveryEvaluation) ? tasks.Score(model) : null,
        };
        return new TrialScores(scores, clock.Elapsed.TotalSeconds)
        {
            Metric = scoring.Metric, BaseOld = scoring.BaseOld, RetentionByAttribute = retention.ByAttribute, AcquisitionByAttribute = acquisition.ByAttribute,
        };
    }

    /// <summary>Restores from <paramref name="checkpoint"/>, else from its sibling "previous", else leaves the session at step 0.</summary>
    private static TrialCheckpointState? Resume(TrainingSession session, string checkpoint, Action<string>? onNotice)
    {
        var previous = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(checkpoint))!, Previous);
        foreach (var candidate in new[] { checkpoint, previous }.Distinct())
        {
            try
            {
                var state = TrialCheckpoint.Load(candidate, session);
                if (state.Kernels is { } then && then != Native.MklKernels.Current.Id)
                    onNotice?.Invoke($"resumed on {Native.MklKernels.Current.Id} kernels from a checkpoint written on {then}: the rest of the run is not bit-identical to an uninterrupted one");
                var precision = Autocast.Type is null ? "fp32" : "bf16";
                if ((state.Precision ?? "fp32") != precision)
                    onNotice?.Invoke($"resumed in {precision} from a checkpoint written in {state.Precision ?? "fp32"}: the rest of the run is not bit-identical to an uninterrupted one");
                return state;
            }
            catch (InvalidCheckpointException e)
            {
                onNotice?.Invoke($"cannot resume from {candidate}: {e.Message}");
            }
        }
        onNotice?.Invoke("no usable checkpoint: the trial starts again from step 0");
        return null;
    }
}
