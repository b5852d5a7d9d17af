using Scale.Model.Baselines;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;

namespace Scale.Model;

/// <summary>The continual pre-training methods Scale compares (DESIGN.md §1).</summary>
public enum MethodKind { Frozen, Full, Preserve, Adapt, Route, Depth, Lora }

/// <summary>A method and its settings: the expansion for SCALE variants, the adapter for LoRA, k for depth expansion.</summary>
public sealed record MethodSpec
{
    public required MethodKind Kind { get; init; }
    public ExpansionSpec? Expansion { get; init; }
    public LoraSpec? Lora { get; init; }
    public int DepthEvery { get; init; } = 2;

    /// <summary>The method's own learning-rate multipliers per parameter group (see TrainingOptions.GroupLearningRates); a sweep's settings override them.</summary>
    public IReadOnlyDictionary<string, double> GroupLearningRates { get; init; } = new Dictionary<string, double>();

    public string Name => Kind.ToString().ToLowerInvariant();

    /// <summary>The named presets with their defaults: frozen, full, preserve, adapt, route, depth, lora.</summary>
    public static MethodSpec Preset(string name, int headsUp = 1, int? ffnUp = null) => name.Trim().ToLowerInvariant() switch
    {
        "frozen" => new() { Kind = MethodKind.Frozen },
        "full" or "fft" => new() { Kind = MethodKind.Full },
        "preserve" => new() { Kind = MethodKind.Preserve, Expansion = ExpansionSpec.Preserve(headsUp, ffnUp) },
        "adapt" => new() { Kind = MethodKind.Adapt, Expansion = ExpansionSpec.Adapt(headsUp, ffnUp) },
        "route" => new() { Kind = MethodKind.Route, Expansion = ExpansionSpec.Route(headsUp, ffnUp), GroupLearningRates = new RouterSpec().GroupLearningRates() },
        "depth" => new() { Kind = MethodKind.Depth },
        "lora" => new() { Kind = MethodKind.Lora, Lora = new LoraSpec() },
        _ => throw new ArgumentException($"Unknown method '{name}'; choose from {string.Join(", ", PresetNames)}."),
    };

    /// <summary>A named method with explicit settings for the SCALE expansion, depth expansion, LoRA and Route's router.</summary>
    public static MethodSpec Named(string name, int headsUp, int? ffnUp, int depthEvery, LoraSpec lora, RouterSpec? router = null)
        => name.Trim().ToLowerInvariant() switch
        {
            "depth" => new MethodSpec { Kind = MethodKind.Depth, DepthEvery = depthEvery },
            "lora" => new MethodSpec { Kind = MethodKind.Lora, Lora = lora },
            "route" => new MethodSpec
            {
                Kind = MethodKind.Route, Expansion = ExpansionSpec.Route(headsUp, ffnUp, router),
                GroupLearningRates = (router ?? new RouterSpec()).GroupLearningRates(),
            },
            _ => Preset(name, headsUp, ffnUp),
        };

    public static readonly IReadOnlyList<string> PresetNames = ["frozen", "full", "preserve", "adapt", "route", "depth", "lora"];

    /// <summary>
    /// Builds the model this method trains on top of <paramref name="baseModel"/>. Every method but full
    /// fine-tuning shares the base's tensors (frozen); full fine-tuning trains a private copy.
    /// </summary>
    public CausalLM Build(Decoder baseModel, long seed = 0) => Kind switch
    {
        MethodKind.Frozen => baseModel.Freeze(),
        MethodKind.Full => Unfrozen(baseModel.DeepClone()),
        MethodKind.Preserve or MethodKind.Adapt or MethodKind.Route =>
            ScaleDecoder.Upscale(baseModel, Expansion ?? throw new ArgumentException($"Method {Name} needs an expansion."), seed),
        MethodKind.Depth => DepthExpansion.Expand(baseModel, DepthEvery),
        MethodKind.Lora => Baselines.Lora.Apply(baseModel, Lora ?? new LoraSpec(), seed),
        _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
    };

    private static Decoder Unfrozen(Decoder model)
    {
        foreach (var p in model.parameters()) p.requires_grad = true;
        return model;
    }
}

/// <summary>Lifetime of the models that methods build on a shared base.</summary>
public static class TrialModels
{
    /// <summary>
    /// Frees the tensors a variant added on top of <paramref name="baseModel"/> (expansions, adapters, copies),
    /// leaving the shared base intact. Disposing the variant itself would dispose the base's tensors too,
    /// since it holds them as its own frozen parameters.
    /// </summary>
    public static void ReleaseOwnTensors(CausalLM model, Decoder baseModel)
    {
        var shared = baseModel.parameters().Select(p => p.Handle).ToHashSet();
        foreach (var (_, parameter) in model.DistinctParameters())
            if (!shared.Contains(parameter.Handle)) parameter.Dispose();
    }
}
