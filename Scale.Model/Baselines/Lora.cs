using Scale.Model.Transformer;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Scale.Model.Baselines;

/// <summary>LoRA settings: rank r, scale alpha (the update is (alpha/r)·B·A), target modules by name, optional layer range.</summary>
internal sealed record LoraSpec
{
    public int Rank { get; init; } = 8;
    public double Alpha { get; init; } = 16;
    public IReadOnlyList<string> TargetModules { get; init; } = ["q_proj", "k_proj", "v_proj", "o_proj"];
    public int? FirstLayer { get; init; }
    public int? LastLayer { get; init; }

    public double Scaling => Alpha / Rank;

    public LoraSpec Validate(ModelConfig config)
    {
        if (Rank < 1) throw new ArgumentException($"Invalid LoRA: rank must be at least 1, got {Rank}.");
        if (!(Alpha > 0)) throw new ArgumentException($"Invalid LoRA: alpha must be positive, got {Alpha}.");
        if (TargetModules.Count == 0) throw new ArgumentException("Invalid LoRA: target_modules is empty.");
        foreach (var module in TargetModules)
            if (!Upscaling.TrainRule.LinearModules.Contains(module))
                throw new ArgumentException($"Invalid LoRA: unknown target module '{module}'; choose from {string.Join(", ", Upscaling.TrainRule.LinearModules)}.");
        foreach (var layer in new[] { FirstLayer, LastLayer })
            if (layer is { } l && (l < 0 || l >= config.NumLayers))
                throw new ArgumentException($"Invalid LoRA: layer {l} is outside 0..{config.NumLayers - 1}.");
        return this;
    }
}

/// <summary>A frozen linear map plus a low-rank update: y = W x + b + (alpha/r)·B(A x), B zero at init.</summary>
internal sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;    // W (out, in), frozen, the base's
    private readonly Parameter? bias;
    private readonly Parameter lora_A;    // (r, in)
    private readonly Parameter lora_B;    // (out, r), zero at init
    private readonly Scalar scaling;      // held by the module: a temporary Scalar could be finalised mid-call
    private Tensor? merged;               // W + scaling·B·A while merged; never registered, never saved

    public LoraLinear(Linear baseLinear, LoraSpec spec, Generator g) : base(nameof(LoraLinear))
    {
        weight = baseLinear.weight!;
        bias = baseLinear.bias;
        var (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1]);
        // A as PEFT initialises it: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)).
        var bound = 1.0 / Math.Sqrt(inFeatures);
        using (var held = Scalars.Scope())
            lora_A = new Parameter(Ops.Place(torch.rand([spec.Rank, inFeatures], generator: g).mul_(held.Of(2 * bound)).sub_(held.Of(bound)), weight.device));
        lora_B = new Parameter(torch.zeros(outFeatures, spec.Rank, device: weight.device));
        scaling = spec.Scaling.ToScalar();
        RegisterComponents();
    }

    public bool IsMerged => merged is not null;

    public override Tensor forward(Tensor x)
        => merged is not null
            ? Ops.Linear(x, merged, bias)
            : Ops.Linear(x, weight, bias).Plus(Ops.Linear(Ops.Linear(x, lora_A), lora_B) * scaling);

    /// <summary>The merged weight W + (alpha/r)·B·A.</summary>
    public Tensor MergedWeight()
    {
        using var noGrad = no_grad();
        return weight.Plus(torch.matmul(lora_B, lora_A) * scaling);
    }

    /// <summary>Serve from one merged matrix; idempotent. The base weight itself is left untouched (it may be shared).</summary>
    public void Merge()
    {
        if (merged is not null) return;
        merged = MergedWeight().DetachFromDisposeScope();
    }

    /// <summary>Back to W plus the adapter; idempotent and exact (the base weight was never modified).</summary>
    public void Unmerge()
    {
        merged?.Dispose();
        merged = null;
    }
}

internal static class Lora
{
    /// <summary>Wraps the target linears of <paramref name="baseModel"/> in adapters; only adapters train.</summary>
    public static Decoder Apply(Decoder baseModel, LoraSpec spec, long seed = 0)
    {
        spec.Validate(baseModel.Config);
        baseModel.Freeze();
        var g = new Generator((ulong)seed);
        var blocks = baseModel.Blocks.Select((block, i) => block.MapLinears((name, linear) =>
            spec.TargetModules.Contains(name) && (spec.FirstLayer is null || i >= spec.FirstLayer) && (spec.LastLayer is null || i <= spec.LastLayer)
                ? new LoraLinear(Linears.Require(linear), spec, g)
                : linear)).ToList();
        return baseModel.WithBlocks(blocks);
    }

    public static void Merge(CausalLM model) { foreach (var m in Adapters(model)) m.Merge(); }
    public static void Unmerge(CausalLM model) { foreach (var m in Adapters(model)) m.Unmerge(); }

    internal static IEnumerable<LoraLinear> Adapters(CausalLM model) => model.modules().OfType<LoraLinear>();
}
