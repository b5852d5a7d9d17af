using Akka.Actor;
using Akka.Event;
using Scale.Actors.Data;
using Scale.Actors.Evaluation;
using Scale.Actors.Sweeps;
using Scale.Model.Experiments;
using Scale.Model.Training;

namespace Scale.Actors.Trainers;

/// <summary>
/// Runs a sweep's trials on this process's resident base: plans the trial from the sweep file, trains it on
/// batches from the node's <see cref="DataLoader"/> (prefetched, bounded), checkpoints under
/// <c>{checkpointRoot}/{trial id}</c>, then has the <see cref="Evaluator"/> score the final weights.
/// Each trial's thread uses <paramref name="threadsPerTrial"/> libtorch threads, so that the device's trials
/// together never use more threads than its budget.
/// </summary>
internal sealed class SweepTrialExecutor(SweepDefinition sweep, TrialRunner runner, string checkpointRoot, IActorRef dataLoader,
                                       string dataset, IActorRef evaluator, EventStream events, int threadsPerTrial,
                                       int? threadsPerDevice = null) : ITrialExecutor
{
    /// <summary>Batches requested ahead of the step being trained.</summary>
    public int PrefetchDepth { get; init; } = 2;

    /// <summary>This device's lock-step groups (null when the sweep turns them off): its trials that can share the base's forward do.</summary>
    public LockStepGroups? LockStep { get; } = sweep.LockStep ? new LockStepGroups { TraceThreads = threadsPerDevice } : null;

    private readonly Lock gate = new();
    private int active;
    private TaskCompletionSource idle = Completed();

    private static TaskCompletionSource Completed()
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        done.SetResult();
        return done;
    }

    /// <summary>
    /// Completes when no trial runs on this executor: a stopped trainer's trials end at their next step, on their own
    /// threads, and the resident base must outlive them.
    /// </summary>
    public Task Idle
    {
        get
        {
            lock (gate) return idle.Task;
        }
    }

    public TrialMetrics Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, CancellationToken cancellation)
        => Execute(trial, attempt, resume, onCheckpoint, _ => { }, cancellation);

    public TrialMetrics Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, Action<ScorePoint> onScores,
                                CancellationToken cancellation)
        => Execute(trial, attempt, resume, onCheckpoint, onScores, cancellation, CancellationToken.None);

    public TrialMetrics Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, Action<ScorePoint> onScores,
                                CancellationToken cancellation, CancellationToken drain)
    {
        lock (gate)
            if (active++ == 0) idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            return Run(trial, attempt, resume, onCheckpoint, onScores, cancellation, drain);
        }
        finally
        {
            lock (gate)
                if (--active == 0) idle.TrySetResult();
        }
    }

    private TrialMetrics Run(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, Action<ScorePoint> onScores,
                             CancellationToken cancellation, CancellationToken drain)
    {
        TorchSharp.torch.set_num_threads(threadsPerTrial);
        var plan = sweep.PlanFor(trial);
        var trialDirectory = SweepPaths.TrialDirectory(checkpointRoot, trial.Id);
        using var log = new TrialLog(trialDirectory, sweep.Name, trial.Id, attempt);
        // The resume point comes from the journal, as a trainer reported it: trusted only inside this trial's directory and
        // within the trial's steps. Anything else is said and ignored, and the attempt trains from the start.
        if (resume is not null && (resume.Step < 0 || resume.Step > plan.Phase.Steps || !SweepPaths.Contains(trialDirectory, resume.Path)))
        {
            var notice = $"ignored the journal's resume point (step {resume.Step}, {resume.Path}): it is not a checkpoint of this trial; training from the start.";
            log.Write("notice", new { message = notice });
            events.Publish(new TrialNotice(trial.Id, notice));
            resume = null;
        }
        log.Write("started", new { method = trial.Method, parameters = trial.Parameters, resume_step = resume?.Step });
        using var batches = new PrefetchingBatches(dataLoader, dataset, plan.Seed, plan.Phase.Batch, PrefetchDepth, TimeSpan.FromMinutes(5));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        double seconds = 0;
        var trained = runner.Train(plan, trialDirectory, resume?.Path, batches,
            onStep: step =>
            {
                seconds = clock.Elapsed.TotalSeconds;
                long done = step.Step - (resume?.Step ?? 0);
                log.Write("step", new { step = step.Step, loss = step.Loss, auxiliary_loss = step.AuxiliaryLoss, learning_rate = step.LearningRate,
                                        tokens_per_second = plan.Phase.TokensPerStep * done / Math.Max(seconds, 1e-9) });
                events.Publish(new TrialProgress(trial.Id, attempt, step.Step, plan.Phase.Steps, step.Loss,
                                                 plan.Phase.TokensPerStep * done / Math.Max(seconds, 1e-9),
                                                 seconds / Math.Max(done, 1) * (plan.Phase.Steps - step.Step)));
            },
            onCheckpoint: (path, step) =>
            {
                log.Write("checkpoint", new { step, path });
                onCheckpoint(path, step);
            },
            cancellation: cancellation,
            onNotice: message =>
            {
                log.Write("notice", new { message });
                events.Publish(new TrialNotice(trial.Id, message));
            },
            onScores: (step, scores) =>
            {
                log.Write("scores", new { step, retention = scores.Scores.Retention, acquisition = scores.Scores.Acquisition, forgetting = scores.Scores.Forgetting }, scores.Scores.Tasks);
                onScores(new ScorePoint(step, scores.Scores) { TotalSteps = plan.Phase.Steps, Metric = scores.Metric });
            },
            attempt: attempt, lockStep: LockStep, checkpointThenStop: drain);
        var scored = evaluator.Ask<CheckpointEvaluated>(new EvaluateCheckpoint(trial.Id, plan, trained.FinalCheckpoint), TimeSpan.FromHours(2), cancellation)
            .GetAwaiter().GetResult();
        log.Write("scored", new { retention = scored.Scores.Scores.Retention, acquisition = scored.Scores.Scores.Acquisition, forgetting = scored.Scores.Scores.Forgetting },
                  scored.Scores.Scores.Tasks);
        // The sweep's evaluation-only routing axis: the same final weights, answered per token by each rule.
        Dictionary<string, RoutedScores>? routed = null;
        double routedSeconds = 0;
        if (plan.Method.CanRoute && sweep.Routing.Count > 0)
        {
            routed = new Dictionary<string, RoutedScores>();
            foreach (var rule in sweep.Routing)
            {
                var under = plan.RoutedBy(Scale.Model.Upscaling.RoutingSpec.Parse(rule));
                var scores = evaluator.Ask<CheckpointEvaluated>(new EvaluateCheckpoint(trial.Id, under, trained.FinalCheckpoint), TimeSpan.FromHours(2), cancellation)
                    .GetAwaiter().GetResult().Scores;
                routedSeconds += scores.Seconds;
                routed[rule] = new RoutedScores(scores.Scores)
                {
                    Threshold = scores.RoutingThreshold, ResidentParameters = scores.ResidentParameters, BlockPasses = scores.BlockPasses,
                    EvaluationSeconds = scores.Seconds,
                };
                log.Write("routed", new { routing = rule, retention = scores.Scores.Retention, acquisition = scores.Scores.Acquisition, forgetting = scores.Scores.Forgetting,
                                          threshold = scores.RoutingThreshold, seconds = scores.Seconds }, scores.Scores.Tasks);
            }
        }
        return new TrialMetrics(scored.Scores.Scores)
        {
            FinalLoss = trained.FinalCheckpoint is null ? null : trained.FinalLoss,
            TrainableParameters = trained.TrainableParameters,
            TokensPerSecond = trained.TokensPerSecond,
            TrainSeconds = trained.TrainSeconds,
            // All scoring: the final weights, the routing axis, and the scores during training.
            EvaluationSeconds = scored.Scores.Seconds + routedSeconds + trained.ScoringSeconds,
            CheckpointSeconds = trained.CheckpointSeconds,
            Metric = scored.Scores.Metric, BaseOld = scored.Scores.BaseOld,
            RetentionByAttribute = scored.Scores.RetentionByAttribute,
            AcquisitionByAttribute = scored.Scores.AcquisitionByAttribute,
            Routed = routed,
            Kernels = Scale.Model.Native.MklKernels.Current.Id,
            Precision = runner.Precision is null ? "fp32" : "bf16",
            RoutingThreshold = scored.Scores.RoutingThreshold,
            ResidentParameters = scored.Scores.ResidentParameters,
        };
    }
}
