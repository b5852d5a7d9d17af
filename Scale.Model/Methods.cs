using Scale.Model.Baselines;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;

namespace Scale.Model;

/// <summary>The continual pre-training methods Scale compares (docs/method.md).</summary>
internal enum MethodKind { Frozen, Full, Preserve, Adapt, Route, Depth, Lora, Freeze }

/// <summary>A method and its settings: the expansion for SCALE variants, the adapter for LoRA, k for depth expansion.</summary>
internal sealed record MethodSpec
{
    public required MethodKind Kind { get; init; }
    public ExpansionSpec? Expansion { get; init; }
    public LoraSpec? Lora { get; init; }
    public int DepthEvery { get; init; } = 2;
    /// <summary>Freeze: the bottom layers that stay frozen with the embeddings (the paper's 3).</summary>
    public int FreezeLayers { get; init; } = 3;

    /// <summary>A baseline's routing rule when it is scored as a routed control (<see cref="RoutedModel"/>); SCALE methods keep theirs in <see cref="ExpansionSpec.Routing"/>.</summary>
    public RoutingSpec? ControlRouting { get; init; }

    /// <summary>The rule this method's answers are routed by, if any: SCALE-Route's, or a routed control's.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public RoutingSpec? Routing => Expansion?.Routing ?? ControlRouting;

    /// <summary>Whether the method still holds the base's computation beside its own, so that its answers can be routed (all but the frozen base itself).</summary>
    [System.Text.Json.Serialization.JsonIgnore] public bool CanRoute => Kind != MethodKind.Frozen;

    /// <summary>This method scored under <paramref name="routing"/>: a SCALE expansion's rule, or a baseline as a routed control.</summary>
    public MethodSpec RoutedBy(RoutingSpec routing)
    {
        if (!CanRoute) throw new ArgumentException("the frozen base has nothing to route between: its two heads would be the same.");
        return Expansion is { } expansion ? this with { Expansion = expansion with { Routing = routing } } : this with { ControlRouting = routing };
    }

    /// <summary>
    /// <paramref name="trained"/> (built by <see cref="Build"/>, its weights loaded) answering under <paramref name="routing"/>: a SCALE
    /// model routes itself from one pass; any other becomes a <see cref="RoutedModel"/> beside <paramref name="baseModel"/>.
    /// </summary>
    public static CausalLM Route(CausalLM trained, Decoder baseModel, RoutingSpec routing)
    {
        if (trained is ScaleDecoder scale)
        {
            scale.Routing = routing;
            return scale;
        }
        return new RoutedModel(baseModel, trained, routing);
    }

    /// <summary>Blocks run per token to answer, in passes of the base's <paramref name="layers"/> blocks: both heads' when routed.</summary>
    public double BlockPasses(int layers)
    {
        double own = Kind == MethodKind.Depth ? (layers + layers / DepthEvery) / (double)layers : 1;
        if (Routing is null) return own;
        if (Expansion is { } e) return 1 + (layers - Math.Min(e.FirstW12Layer(layers), layers)) / (double)layers;   // the base continues above the first W12
        return own + 1;
    }

    public string Name => Kind.ToString().ToLowerInvariant();

    /// <summary>Whether this method's original stream is the frozen base's below some block of a <paramref name="layers"/>-block base (a lock-step group can share that forward).</summary>
    public bool SharesBaseForward(int layers)
        => Kind is MethodKind.Preserve or MethodKind.Adapt or MethodKind.Route && Expansion is { } e && e.FirstW12Layer(layers) > 0;

    /// <summary>A method with its defaults (<see cref="Experiments.TrialPlanner"/>), optionally wider: for tests and tools.</summary>
    public static MethodSpec Preset(string name, int headsUp = 1, int? ffnUp = null)
    {
        var settings = new Dictionary<string, string>();
        if (Experiments.TrialPlanner.KindOf(name) is MethodKind.Preserve or MethodKind.Adapt or MethodKind.Route)
        {
            settings["heads_up"] = headsUp.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (ffnUp is { } f) settings["ffn_up"] = f.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        return Experiments.TrialPlanner.Plan(PresetExperiment, name, settings).Method;
    }

    /// <summary>The experiment presets are planned on: only the base's layer count matters to them (depth and layer ranges are checked against it).</summary>
    private static readonly Experiments.ExperimentSpec PresetExperiment = new() { Model = new ModelConfig { VocabSize = 512, HiddenSize = 64, NumLayers = 64, NumHeads = 4, IntermediateSize = 128 } };

    public static IReadOnlyList<string> PresetNames => Experiments.TrialPlanner.MethodNames;

    /// <summary>
    /// Builds the model this method trains on top of <paramref name="baseModel"/>. Every method but full
    /// fine-tuning shares the base's tensors (frozen); full fine-tuning trains a private copy.
    /// </summary>
    public CausalLM Build(Decoder baseModel, long seed = 0) => Kind switch
    {
        MethodKind.Frozen => baseModel.Freeze(),
        MethodKind.Full => Unfrozen(baseModel.DeepClone()),
        MethodKind.Freeze => FrozenBelow(Unfrozen(baseModel.DeepClone()), Math.Min(FreezeLayers, baseModel.Config.NumLayers - 1)),
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

    /// <summary>The paper's Freeze baseline on a private copy: the embeddings and blocks 0..k−1 frozen, the rest trains
    /// (a tied head is the embedding, so it stays frozen too).</summary>
    private static Decoder FrozenBelow(Decoder model, int layers)
    {
        foreach (var (name, p) in model.named_parameters())
        {
            bool frozen = name.StartsWith("embed_tokens.", StringComparison.Ordinal)
                          || (name.StartsWith("layers.", StringComparison.Ordinal) && int.Parse(name.Split('.')[1], System.Globalization.CultureInfo.InvariantCulture) < layers);
            p.requires_grad = !frozen;
        }
        return model;
    }
}

/// <summary>Lifetime of the models that methods build on a shared base.</summary>
internal static class TrialModels
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
