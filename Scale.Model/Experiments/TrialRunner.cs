using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Training;
using Scale.Model.Transformer;

namespace Scale.Model.Experiments;

/// <summary>One trial of a sweep: a method with its settings, trained for a phase, checkpointed every so many steps.</summary>
public sealed record TrialPlan(MethodSpec Method, PhaseSpec Phase, long Seed, int CheckpointEvery);

/// <summary>A trial's end: its scores on the old and new populations and what it cost.</summary>
public sealed record TrialOutcome(long Steps, double FinalLoss, double Retention, double Acquisition, double Forgetting,
                                  long TrainableParameters, double TokensPerSecond);

/// <summary>
/// Runs one trial on a shared, frozen base: builds the method's model from the trial's seed, resumes from a
/// trial checkpoint when given one (trainable tensors, optimiser state, step; the batches follow from the
/// step), trains to the end with a checkpoint every <see cref="TrialPlan.CheckpointEvery"/> steps, then scores
/// retention and acquisition. A resumed trial ends bit-for-bit where an uninterrupted one does.
/// Two checkpoints are kept, "latest" and "previous": when the one to resume from is damaged, the trial falls
/// back to the other, then to the start, so a corrupt file costs steps, never the trial.
/// </summary>
public sealed class TrialRunner(Decoder baseModel, ByteBpeTokenizer tokenizer, PackedSequences train,
                                IReadOnlyList<BioPrompt> oldPrompts, IReadOnlyList<BioPrompt> newPrompts, double baseOld)
{
    public const string Latest = "latest";
    public const string Previous = "previous";

    public TrialOutcome Run(TrialPlan plan, string checkpointDirectory, string? resumeFrom = null,
                            Action<StepResult>? onStep = null, Action<string, long>? onCheckpoint = null,
                            CancellationToken cancellation = default, Action<string>? onNotice = null)
    {
        if (plan.CheckpointEvery < 1) throw new ArgumentException($"checkpoint_every must be at least 1, got {plan.CheckpointEvery}.");
        var model = plan.Method.Build(baseModel, plan.Seed);
        try
        {
            double seconds = 0;
            StepResult last = default;
            long trained = 0;
            if (model.TrainableParameterCount() > 0)
            {
                using var session = new TrainingSession(model, new TrainingOptions
                {
                    LearningRate = plan.Phase.LearningRate, WarmupSteps = plan.Phase.WarmupSteps, TotalSteps = plan.Phase.Steps,
                });
                if (resumeFrom is not null) Resume(session, resumeFrom, onNotice);
                var schedule = new BatchSchedule(train.Count, plan.Phase.Batch, plan.Seed);
                for (long step = session.Step; step < plan.Phase.Steps; step++)
                {
                    cancellation.ThrowIfCancellationRequested();
                    var clock = System.Diagnostics.Stopwatch.StartNew();
                    last = session.TrainStep([train.Batch(schedule.IndicesFor(step))]);
                    seconds += clock.Elapsed.TotalSeconds;
                    trained++;
                    onStep?.Invoke(last);
                    if (session.Step % plan.CheckpointEvery != 0 || session.Step == plan.Phase.Steps) continue;
                    var path = Path.Combine(checkpointDirectory, Latest);
                    var previous = Path.Combine(checkpointDirectory, Previous);
                    if (Directory.Exists(path))
                    {
                        if (Directory.Exists(previous)) Directory.Delete(previous, recursive: true);
                        Directory.Move(path, previous);
                    }
                    TrialCheckpoint.Save(path, session, dataPosition: session.Step);
                    onCheckpoint?.Invoke(path, session.Step);
                }
            }
            var retention = TeacherForcedRecall.Measure(model, tokenizer, oldPrompts).Recall;
            var acquisition = TeacherForcedRecall.Measure(model, tokenizer, newPrompts).Recall;
            return new TrialOutcome(plan.Phase.Steps, last.Loss, retention, acquisition, baseOld - retention,
                                    model.TrainableParameterCount(),
                                    seconds > 0 ? plan.Phase.TokensPerStep * trained / seconds : 0);
        }
        finally
        {
            if (plan.Method.Kind != MethodKind.Frozen) TrialModels.ReleaseOwnTensors(model, baseModel);
        }
    }

    /// <summary>Restores from <paramref name="checkpoint"/>, else from its sibling "previous", else leaves the session at step 0.</summary>
    private static void Resume(TrainingSession session, string checkpoint, Action<string>? onNotice)
    {
        var previous = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(checkpoint))!, Previous);
        foreach (var candidate in new[] { checkpoint, previous }.Distinct())
        {
            try
            {
                TrialCheckpoint.Load(candidate, session);
                return;
            }
            catch (InvalidCheckpointException e)
            {
                onNotice?.Invoke($"cannot resume from {candidate}: {e.Message}");
            }
        }
        onNotice?.Invoke("no usable checkpoint: the trial starts again from step 0");
    }
}
