using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Training;

/// <summary>What one optimiser step did.</summary>
internal readonly record struct StepResult(long Step, double Loss, double AuxiliaryLoss, double GradientNorm, double LearningRate);

/// <summary>A training step's loss was NaN or infinite; the parameters were left as they were before the step.</summary>
internal sealed class NonFiniteLossException(long step, double loss)
    : Exception($"Loss became {loss} at step {step}; the step was not applied.")
{
    public long Step { get; } = step;
}

/// <summary>
/// Trains the trainable tensors of a model with AdamW, warm-up then cosine learning rates, gradient
/// clipping, gradient accumulation and per-group learning rates. Frozen tensors get neither gradients
/// nor optimiser state. Deterministic: the same model, options and batches give the same bits.
/// </summary>
internal sealed class TrainingSession : IDisposable
{
    private readonly AdamW optimizer;
    private readonly Device device;
    private readonly IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable;

    public TrainingSession(CausalLM model, TrainingOptions options)
    {
        Model = model;
        device = model.Device;
        Options = options.Validate();
        trainable = model.TrainableParameters();
        if (trainable.Count == 0)
            throw new ArgumentException("The model has no trainable parameters (the frozen base is evaluated, not trained).");
        optimizer = new AdamW(
            trainable.Select(p => (p.Name, p.Parameter, options.Rates.Of(ParameterGroups.Of(p.Name)))),
            options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay);
    }

    public CausalLM Model { get; }
    public TrainingOptions Options { get; }

    /// <summary>Optimiser steps taken so far (restored from a checkpoint when resumed).</summary>
    public long Step => optimizer.StepCount;

    public IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> Trainable => trainable;

    /// <summary>
    /// One optimiser step over <see cref="TrainingOptions.AccumulationSteps"/> micro-batches of tokens (B, T+1):
    /// each predicts tokens 1..T from tokens 0..T-1. Batches may come from the CPU: each is placed on the model's device.
    /// </summary>
    public StepResult TrainStep(IReadOnlyList<Tensor> microBatches) => TrainStep(microBatches, null);

    /// <summary>
    /// As <see cref="TrainStep(IReadOnlyList{Tensor})"/>, with the frozen base's part of each forward pass from
    /// <paramref name="traceFor"/>(inputs) (a lock-step group's <see cref="BaseTrace"/> of those inputs, on the model's device);
    /// null: the model computes all of it. The step is the same bits either way.
    /// </summary>
    public StepResult TrainStep(IReadOnlyList<Tensor> microBatches, Func<Tensor, BaseTrace>? traceFor)
    {
        if (microBatches.Count != Options.AccumulationSteps)
            throw new ArgumentException($"Expected {Options.AccumulationSteps} micro-batches, got {microBatches.Count}.");
        using var scope = NewDisposeScope();
        optimizer.ZeroGrad();
        double lossSum = 0, auxSum = 0;
        foreach (var given in microBatches)
        {
            var batch = Ops.IsOn(given, device) ? given : given.to(device);
            var (inputs, targets) = Split(batch);
            var (logits, auxiliary) = traceFor is null ? Model.ForwardForTraining(inputs) : Model.ForwardForTraining(inputs, traceFor(inputs));
            var lmLoss = Ops.LanguageModelLoss(logits, targets);
            var loss = auxiliary is null ? lmLoss : lmLoss.Plus(auxiliary);
            using var held = Scalars.Scope();
            loss.div(held.Of(microBatches.Count)).backward();
            lossSum += lmLoss.item<float>();
            auxSum += auxiliary?.item<float>() ?? 0;
        }
        double meanLoss = lossSum / microBatches.Count;
        if (!double.IsFinite(meanLoss) || !double.IsFinite(auxSum))
        {
            optimizer.ZeroGrad();
            throw new NonFiniteLossException(Step, double.IsFinite(meanLoss) ? auxSum : meanLoss);
        }
        double norm = Options.GradientClip > 0
            ? nn.utils.clip_grad_norm_(optimizer.Parameters, Options.GradientClip)
            : double.NaN;
        double lr = Options.LearningRateAt(Step);
        optimizer.Step(lr);
        optimizer.ZeroGrad();
        // No forced collection: every tensor of the step is freed by its scope, every Scalar by its ScalarScope, and each
        // gradient wrapper where it is read (AdamW), so nothing native waits for a finalizer. Measured on the bench
        // configuration without one (docs/bench.md, 2026-12-01), peak RSS levels off: preserve 508 MB after 60 steps, 561
        // after 200, 570 after 600; full 588, 638, 671. A gen-0 collection per step only lowered the plateau (458 and 582
        // MB after 200 steps): a lower high-water mark, not a leak stopped, so it is not worth a forced collection.
        return new StepResult(Step, meanLoss, auxSum / microBatches.Count, norm, lr);
    }

    /// <summary>Mean LM loss on tokens (B, T+1) without gradients.</summary>
    public static double EvaluateLoss(CausalLM model, Tensor batch)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (inputs, targets) = Split(batch.to(model.Device));
        return Ops.LanguageModelLoss(model.forward(inputs), targets).item<float>();
    }

    internal AdamW Optimizer => optimizer;

    private static (Tensor Inputs, Tensor Targets) Split(Tensor batch)
    {
        long t = batch.shape[1] - 1;
        return (batch.narrow(1, 0, t), batch.narrow(1, 1, t));   // (B, T), (B, T)
    }

    public void Dispose() => optimizer.Dispose();
}
