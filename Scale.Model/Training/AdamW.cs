using TorchSharp;
using TorchSharp.Modules;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Training;

/// <summary>
/// AdamW (decoupled weight decay, bias-corrected moments; PyTorch's update rule) over named parameters.
/// Written here rather than taken from TorchSharp because a trial checkpoint must hold the optimiser state
/// by parameter name in safetensors, and TorchSharp's optimisers serialise their state by position in a
/// format of their own. The update is a handful of in-place tensor operations per parameter.
/// </summary>
internal sealed class AdamW : IDisposable
{
    private sealed record Slot(string Name, Parameter Parameter, Tensor ExpAvg, Tensor ExpAvgSq, double LrMultiplier);

    private readonly List<Slot> slots;
    private readonly double beta1, beta2, eps, weightDecay;

    public AdamW(IEnumerable<(string Name, Parameter Parameter, double LrMultiplier)> parameters,
                 double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
    {
        slots = parameters.Select(p => new Slot(p.Name, p.Parameter,
            torch.zeros_like(p.Parameter).DetachFromDisposeScope(), torch.zeros_like(p.Parameter).DetachFromDisposeScope(),
            p.LrMultiplier)).ToList();
        (this.beta1, this.beta2, this.eps, this.weightDecay) = (beta1, beta2, eps, weightDecay);
    }

    /// <summary>Optimiser steps taken.</summary>
    public long StepCount { get; private set; }

    public IEnumerable<Parameter> Parameters => slots.Select(s => s.Parameter);

    public void ZeroGrad()
    {
        foreach (var s in slots)
        {
            using var grad = s.Parameter.grad;
            if (grad is not null) s.Parameter.grad = null;
        }
    }

    /// <summary>One update at base learning rate <paramref name="lr"/> (each parameter scaled by its group's multiplier).</summary>
    public void Step(double lr)
    {
        StepCount++;
        double correction1 = 1 - Math.Pow(beta1, StepCount);
        double correction2 = Math.Sqrt(1 - Math.Pow(beta2, StepCount));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        // Every Scalar is held until the step ends (see Scalars): none is left to a finalizer.
        using var held = Scalars.Scope();
        var (b1, b2, oneMinusB1, oneMinusB2) = (held.Of(beta1), held.Of(beta2), held.Of(1 - beta1), held.Of(1 - beta2));
        var (c2, epsilon, one) = (held.Of(correction2), held.Of(eps), Scalars.OneDouble);
        foreach (var s in slots)
        {
            // Dispose the wrapper now: a gradient's storage stays alive as long as any wrapper of it does.
            using var grad = s.Parameter.grad;
            if (grad is null) continue;
            double rate = lr * s.LrMultiplier;
            var decay = held.Of(1 - rate * weightDecay);
            var stepSize = held.Of(-rate / correction1);
            if (weightDecay != 0) s.Parameter.mul_(decay);
            s.ExpAvg.mul_(b1).add_(grad, alpha: oneMinusB1);
            s.ExpAvgSq.mul_(b2).addcmul_(grad, grad, value: oneMinusB2);
            var denominator = s.ExpAvgSq.sqrt().div_(c2).add_(epsilon, one);
            s.Parameter.addcdiv_(s.ExpAvg, denominator, value: stepSize);
        }
    }

    /// <summary>The moments by name: "{name}.exp_avg" and "{name}.exp_avg_sq".</summary>
    public Dictionary<string, Tensor> StateTensors()
    {
        var state = new Dictionary<string, Tensor>();
        foreach (var s in slots)
        {
            state[s.Name + ".exp_avg"] = s.ExpAvg;
            state[s.Name + ".exp_avg_sq"] = s.ExpAvgSq;
        }
        return state;
    }

    /// <summary>Restores moments and step count; shapes were checked by the caller.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        using var noGrad = no_grad();
        foreach (var s in slots)
        {
            s.ExpAvg.copy_(state[s.Name + ".exp_avg"]);
            s.ExpAvgSq.copy_(state[s.Name + ".exp_avg_sq"]);
        }
        StepCount = stepCount;
    }

    public void Dispose()
    {
        foreach (var s in slots)
        {
            s.ExpAvg.Dispose();
            s.ExpAvgSq.Dispose();
        }
    }
}
