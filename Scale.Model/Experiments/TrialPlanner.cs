using System.Globalization;
using System.Text;
using Scale.Model.Baselines;
using Scale.Model.Training;
using Scale.Model.Upscaling;

namespace Scale.Model.Experiments;

/// <summary>
/// One trial, typed: the method with its expansion, router, LoRA and depth settings, the phase, the learning-rate
/// groups, the seed of the expansion's initialisation and of the batch order, and the checkpoint interval.
/// Built only by <see cref="TrialPlanner"/> in the programs; tests may build one directly.
/// </summary>
internal sealed record TrialPlan(MethodSpec Method, PhaseSpec Phase, long Seed, int CheckpointEvery)
{
    public GroupRates Rates { get; init; } = new();

    /// <summary>This trial scored under <paramref name="routing"/> (SCALE-Route's rule, or a routed control's): evaluation only, the weights are the trial's.</summary>
    public TrialPlan RoutedBy(RoutingSpec routing) => this with { Method = Method.RoutedBy(routing) };

    /// <summary>Score the trial every this many steps of its training (0: only at the end).</summary>
    public int EvaluateEvery { get; init; }

    public TrainingOptions Options => new()
    {
        LearningRate = Phase.LearningRate, WarmupSteps = Phase.WarmupSteps, TotalSteps = Phase.Steps, Rates = Rates,
    };
}

/// <summary>
/// One setting a trial may override. <see cref="Key"/> is its name in a sweep's search (and in a trial's
/// parameters); <see cref="ExperimentKey"/>, where there is one, its name in an experiment file, which sets the
/// experiment-wide value; <see cref="Field"/> the <see cref="TrialPlan"/> field it sets. docs/sweeps.md's parameter
/// table is <see cref="TrialPlanner.MarkdownTable"/> (a test checks that they agree).
/// </summary>
internal sealed record TrialKey(string Key, string? ExperimentKey, string Field, string Meaning, IReadOnlyList<MethodKind> Methods,
                              Action<TrialDraft, TrialValue> Apply);

/// <summary>A setting's text with the name to give in errors (the sweep key or the experiment file's key).</summary>
internal sealed record TrialValue(string Text, string Name)
{
    public ArgumentException Error(string reason) => new($"parameter '{Name}' {reason}");

    public int Int(int min)
    {
        if (!int.TryParse(Text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
            throw Error($"must be a whole number, got '{Text}'.");
        return value >= min ? value : throw Error($"must be at least {min}, got {value}.");
    }

    public double Number(bool positive)
    {
        if (!double.TryParse(Text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
            throw Error($"must be a number, got '{Text}'.");
        return positive && !(value > 0) ? throw Error($"must be above 0, got {Text}.") : value;
    }

    public bool Bool() => bool.TryParse(Text, out var value) ? value : throw Error($"must be true or false, got '{Text}'.");

    public T Choice<T>() where T : struct, Enum
        => !Text.Any(char.IsDigit) && Enum.TryParse<T>(Text, ignoreCase: true, out var value) && Enum.IsDefined(value)
            ? value
            : throw Error($"must be one of {string.Join(", ", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))}, got '{Text}'.");

    public IReadOnlyList<string> List() => Text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
}

/// <summary>A trial being planned: the defaults, then the experiment's settings, then the trial's own, applied in that order.</summary>
internal sealed class TrialDraft(MethodKind kind, PhaseSpec phase, long seed)
{
    public MethodKind Kind { get; } = kind;
    public PhaseSpec Phase { get; set; } = phase;
    public long Seed { get; set; } = seed;
    public int HeadsUp { get; set; } = 1;
    public int? FfnUp { get; set; }
    public bool TrainNorms { get; set; } = true;
    public HashSet<ExpansionBlock> Frozen { get; } = [];
    public IReadOnlyList<string>? W12Modules { get; set; }
    public (int First, int Last)? W12Layers { get; set; }
    public int? W12Last { get; set; }
    public int? PreservedLayers { get; set; }
    public ExpansionInit Init { get; set; } = ExpansionInit.Svd;
    public RoutingSpec Routing { get; set; } = ExpansionSpec.DefaultRouting;
    public bool RouteInLoss { get; set; }
    public int FreezeLayers { get; set; } = 3;
    public int DepthEvery { get; set; } = 2;
    public LoraSpec Lora { get; set; } = new();
    public GroupRates Rates { get; set; } = new();
}

/// <summary>
/// The one place a trial's settings become a <see cref="TrialPlan"/>: the method's defaults, then the experiment's
/// settings (its file's `scale`, `lora` and `route` blocks), then the trial's own parameters, each named by one row
/// of <see cref="Keys"/>. A bad value or an impossible combination fails naming the key and the reason.
/// </summary>
internal static class TrialPlanner
{
    private static readonly MethodKind[] Trained = [MethodKind.Full, MethodKind.Freeze, MethodKind.Depth, MethodKind.Lora, MethodKind.Preserve, MethodKind.Adapt, MethodKind.Route];
    private static readonly MethodKind[] Scale = [MethodKind.Preserve, MethodKind.Adapt, MethodKind.Route];
    private static readonly MethodKind[] WithW12 = [MethodKind.Adapt, MethodKind.Route];
    private static readonly MethodKind[] RouteOnly = [MethodKind.Route];

    private static readonly IReadOnlyDictionary<string, ExpansionBlock> BlockNames = new Dictionary<string, ExpansionBlock>
    {
        ["w12"] = ExpansionBlock.W12, ["w21"] = ExpansionBlock.W21, ["w22"] = ExpansionBlock.W22, ["embed_up"] = ExpansionBlock.EmbedUp,
        ["head_up"] = ExpansionBlock.HeadUp, ["norm_up"] = ExpansionBlock.NormUp,
    };

    /// <summary>Module sets W12 may be limited to, by name (the paper's collaborative-adaptation ablation: attention or FFN).</summary>
    private static readonly IReadOnlyDictionary<string, IReadOnlyList<string>> ModuleSets = new Dictionary<string, IReadOnlyList<string>>
    {
        ["attention"] = TrainRule.AttentionModules, ["ffn"] = TrainRule.FeedForwardModules, ["both"] = TrainRule.LinearModules,
    };

    /// <summary>Every setting a trial may override, in the order of the docs' table.</summary>
    public static readonly IReadOnlyList<TrialKey> Keys =
    [
        new("lr", "continual.learning-rate", "Phase.LearningRate", "peak learning rate (default: the method's own, in the table below)", Trained, (d, v) => d.Phase = d.Phase with { LearningRate = v.Number(positive: true) }),
        new("steps", null, "Phase.Steps", "training steps", Trained, (d, v) => d.Phase = d.Phase with { Steps = v.Int(1) }),
        new("warmup", null, "Phase.WarmupSteps", "warm-up steps", Trained, (d, v) => d.Phase = d.Phase with { WarmupSteps = v.Int(0) }),
        new("seed", null, "Seed", "seed of the expansion's initialisation and of the batch order", Trained, (d, v) => d.Seed = v.Int(0)),
        new("heads_up", "scale.heads-up", "Method.Expansion.HeadsUp", "h_u, extra attention heads", Scale, (d, v) => d.HeadsUp = v.Int(1)),
        new("ffn_up", "scale.ffn-up", "Method.Expansion.FfnUp", "f_u, extra FFN units (default f·h_u/h)", Scale, (d, v) => d.FfnUp = v.Int(0)),
        new("train_norms", null, "Method.Expansion.Train", "whether the new norm gains train (`true`/`false`)", Scale, (d, v) => d.TrainNorms = v.Bool()),
        new("frozen_blocks", null, "Method.Expansion.Train",
            "new blocks kept at their initial values, comma-separated: w12, w21, w22, embed_up, head_up, norm_up", Scale, (d, v) =>
            {
                foreach (var name in v.List())
                    d.Frozen.Add(BlockNames.TryGetValue(name, out var block) ? block : throw v.Error($"names an unknown block '{name}'; choose from {string.Join(", ", BlockNames.Keys)}."));
            }),
        new("init", "scale.init", "Method.Expansion.Init", "how W21 and W22 start: svd (from the base weight's singular vectors) or normal", Scale,
            (d, v) => d.Init = v.Choice<ExpansionInit>()),
        new("lr_expansion", "scale.lr-expansion", "Rates.Expansion", "learning-rate multiplier of W21, W22, E_u, H_u and the new norm gains", Scale,
            (d, v) => d.Rates = d.Rates with { Expansion = v.Number(positive: true) }),
        new("w12_modules", "scale.w12-modules", "Method.Expansion.Train", "modules whose W12 trains: `attention`, `ffn`, `both`, or names, comma-separated (`q_proj,o_proj`)", WithW12,
            (d, v) => d.W12Modules = ModuleSets.TryGetValue(v.Text.Trim(), out var set) ? set : v.List()),
        new("preserved_layers", "scale.preserved-layers", "Method.Expansion.Train", "L_fp: the bottom layers kept preserved; W12 trains only in layers ≥ L_fp", WithW12,
            (d, v) => d.PreservedLayers = v.Int(0)),
        new("w12_layers", null, "Method.Expansion.Train", "layers whose W12 trains: `a-b` or `a` (from 0)", WithW12, (d, v) => d.W12Layers = Layers(v)),
        new("w12_last", null, "Method.Expansion.Train", "W12 trains only in the last k layers", WithW12, (d, v) => d.W12Last = v.Int(1)),
        new("lr_w12", null, "Rates.W12", "learning-rate multiplier of W12", WithW12, (d, v) => d.Rates = d.Rates with { W12 = v.Number(positive: true) }),
        new("routing", "route.routing", "Method.Expansion.Routing",
            "Route's rule: `cosine:τ`, `cosine-prob:τ`, `confidence:θ`, `novelty:s[:window]` or `novelty-auto:q[:window]` (the preservation head where the rule says so, else the adaptation head)", RouteOnly,
            (d, v) =>
            {
                try
                {
                    d.Routing = RoutingSpec.Parse(v.Text);
                }
                catch (ArgumentException e)
                {
                    throw v.Error($"is not a routing rule: {e.Message}");
                }
            }),
        new("route_in_loss", "route.in-loss", "Method.Expansion.RouteInLoss",
            "Route trains on its routed output (`true`) instead of its adaptation head (`false`, the default): only tokens its rule routes to the adaptation head teach it", RouteOnly,
            (d, v) => d.RouteInLoss = v.Bool()),
        new("lr_base", null, "Rates.Base", "learning-rate multiplier of trained base weights", [MethodKind.Full, MethodKind.Freeze, MethodKind.Depth],
            (d, v) => d.Rates = d.Rates with { Base = v.Number(positive: true) }),
        new("freeze_layers", "freeze.layers", "Method.FreezeLayers", "Freeze: the bottom k layers (and the embeddings) stay frozen; at most L − 1", [MethodKind.Freeze],
            (d, v) => d.FreezeLayers = v.Int(0)),
        new("depth_every", "scale.depth-every", "Method.DepthEvery", "depth expansion: insert a block after every k-th", [MethodKind.Depth], (d, v) => d.DepthEvery = v.Int(1)),
        new("lora_rank", "lora.rank", "Method.Lora.Rank", "LoRA rank r", [MethodKind.Lora], (d, v) => d.Lora = d.Lora with { Rank = v.Int(1) }),
        new("lora_alpha", "lora.alpha", "Method.Lora.Alpha", "LoRA alpha (the update is alpha/r·B·A)", [MethodKind.Lora], (d, v) => d.Lora = d.Lora with { Alpha = v.Number(positive: true) }),
        new("lora_targets", "lora.targets", "Method.Lora.TargetModules", "LoRA's target modules, comma-separated", [MethodKind.Lora], (d, v) => d.Lora = d.Lora with { TargetModules = v.List() }),
        new("lr_lora", null, "Rates.Lora", "learning-rate multiplier of LoRA's A and B", [MethodKind.Lora], (d, v) => d.Rates = d.Rates with { Lora = v.Number(positive: true) }),
    ];

    private static readonly IReadOnlyDictionary<string, TrialKey> ByKey = Keys.ToDictionary(k => k.Key);

    /// <summary>
    /// Each method's own defaults, as settings (applied before the experiment's, so an experiment file's
    /// `continual.learning-rate` or `scale.heads-up` overrides them for every method, and a trial's parameters override
    /// both). The learning rates are the ones that taught each method most on the validation pair (`bio-validation`,
    /// docs/experiments.md, never on a reported pair); the SCALE methods get 2 extra heads, not 1,
    /// which taught Preserve and Adapt far more there. Chosen on this project's small benchmark models: a model of another size needs its own.
    /// </summary>
    public static readonly IReadOnlyDictionary<MethodKind, IReadOnlyDictionary<string, string>> MethodDefaults =
        new Dictionary<MethodKind, IReadOnlyDictionary<string, string>>
        {
            [MethodKind.Full] = new Dictionary<string, string> { ["lr"] = "2e-3" },
            [MethodKind.Freeze] = new Dictionary<string, string> { ["lr"] = "1.5e-2" },
            [MethodKind.Depth] = new Dictionary<string, string> { ["lr"] = "6e-3" },
            [MethodKind.Lora] = new Dictionary<string, string> { ["lr"] = "6e-3" },
            [MethodKind.Preserve] = new Dictionary<string, string> { ["lr"] = "6e-3", ["heads_up"] = "2" },
            [MethodKind.Adapt] = new Dictionary<string, string> { ["lr"] = "4e-3", ["heads_up"] = "2" },
            [MethodKind.Route] = new Dictionary<string, string> { ["lr"] = "4e-3", ["heads_up"] = "2" },
        };

    public static readonly IReadOnlyList<string> MethodNames = ["frozen", "full", "freeze", "preserve", "adapt", "route", "depth", "lora"];

    public static MethodKind KindOf(string method) => method.Trim().ToLowerInvariant() switch
    {
        "frozen" => MethodKind.Frozen,
        "full" or "fft" => MethodKind.Full,
        "freeze" => MethodKind.Freeze,
        "preserve" => MethodKind.Preserve,
        "adapt" => MethodKind.Adapt,
        "route" => MethodKind.Route,
        "depth" => MethodKind.Depth,
        "lora" => MethodKind.Lora,
        _ => throw new ArgumentException($"Unknown method '{method}'; choose from {string.Join(", ", MethodNames)}."),
    };

    /// <summary>
    /// The plan of <paramref name="method"/> on <paramref name="experiment"/> with the trial's own
    /// <paramref name="parameters"/> (sweep keys); throws ArgumentException naming the key and the reason.
    /// </summary>
    public static TrialPlan Plan(ExperimentSpec experiment, string method, IReadOnlyDictionary<string, string>? parameters = null, int? checkpointEvery = null,
                                 int evaluateEvery = 0)
    {
        var kind = KindOf(method);
        parameters ??= new Dictionary<string, string>();
        foreach (var key in parameters.Keys)
        {
            if (!ByKey.TryGetValue(key, out var known))
                throw new ArgumentException($"unknown parameter '{key}'; known: {string.Join(", ", ByKey.Keys)}.");
            if (!known.Methods.Contains(kind))
                throw new ArgumentException($"parameter '{key}' ({known.Meaning}) does not apply to method '{method}'; it applies to {string.Join(", ", known.Methods.Select(m => m.ToString().ToLowerInvariant()))}.");
        }
        var draft = new TrialDraft(kind, experiment.Continual, experiment.Seed);
        void Apply(IReadOnlyDictionary<string, string> settings, Func<TrialKey, string> name, bool onlyWhereApplicable)
        {
            foreach (var (key, text) in settings)
            {
                var row = ByKey[key];
                if (onlyWhereApplicable && !row.Methods.Contains(kind)) continue;
                row.Apply(draft, new TrialValue(text, name(row)));
            }
        }
        Apply(MethodDefaults.GetValueOrDefault(kind) ?? new Dictionary<string, string>(), k => k.Key, onlyWhereApplicable: false);
        Apply(experiment.Settings, k => k.ExperimentKey ?? k.Key, onlyWhereApplicable: true);
        Apply(parameters, k => k.Key, onlyWhereApplicable: false);
        if (evaluateEvery < 0) throw new ArgumentException($"evaluate-every must be 0 (only at the end) or more, got {evaluateEvery}.");
        return Build(draft, experiment, checkpointEvery ?? draft.Phase.Steps) with { EvaluateEvery = evaluateEvery };
    }

    /// <summary>The method as <see cref="Plan"/> builds it on <paramref name="experiment"/> without a trial's own settings.</summary>
    public static MethodSpec Method(ExperimentSpec experiment, string method) => Plan(experiment, method).Method;

    private static TrialPlan Build(TrialDraft d, ExperimentSpec experiment, int checkpointEvery)
    {
        if (checkpointEvery < 1) throw new ArgumentException($"checkpoint_every must be at least 1, got {checkpointEvery}.");
        d.Phase.Validate("continual");
        var config = experiment.Model with { VocabSize = Math.Max(experiment.VocabSize, 1) };
        var (first, last) = d.W12Layers is { } range ? range : ((int?)null, (int?)null);
        if (new[] { d.W12Layers is not null, d.W12Last is not null, d.PreservedLayers is not null }.Count(b => b) > 1)
            throw new ArgumentException("set only one of 'w12_layers', 'w12_last' and 'preserved_layers'.");
        if (d.W12Last is { } lastK)
        {
            if (lastK > config.NumLayers) throw new ArgumentException($"parameter 'w12_last' {lastK} is above the base's {config.NumLayers} layers.");
            (first, last) = (config.NumLayers - lastK, config.NumLayers - 1);
        }
        if (d.PreservedLayers is { } preserved)
        {
            if (preserved >= config.NumLayers)
                throw new ArgumentException($"parameter 'preserved_layers' {preserved} leaves no layer for W12: the base has {config.NumLayers} (use preserve for none).");
            (first, last) = (preserved, config.NumLayers - 1);
        }
        ExpansionSpec? expansion = d.Kind switch
        {
            MethodKind.Preserve => ExpansionSpec.Preserve(d.HeadsUp, d.FfnUp),
            MethodKind.Adapt => ExpansionSpec.Adapt(d.HeadsUp, d.FfnUp, d.W12Modules, first, last),
            MethodKind.Route => ExpansionSpec.Route(d.HeadsUp, d.FfnUp, d.Routing, d.W12Modules, first, last),
            _ => null,
        };
        if (expansion is not null) expansion = expansion with { Init = d.Init, RouteInLoss = d.RouteInLoss };
        if (expansion is not null)
        {
            if (!d.TrainNorms) d.Frozen.Add(ExpansionBlock.NormUp);
            expansion = (expansion with { Train = expansion.Train.Where(r => !d.Frozen.Contains(r.Block)).ToList() }).Validate(config);
        }
        if (d.Kind == MethodKind.Lora) d.Lora.Validate(config);
        if (d.Kind == MethodKind.Depth && d.DepthEvery > config.NumLayers)
            throw new ArgumentException($"parameter 'depth_every' {d.DepthEvery} is above the base's {config.NumLayers} layers: nothing would be inserted.");
        if (d.Kind == MethodKind.Freeze && d.FreezeLayers > config.NumLayers - 1)
            d.FreezeLayers = config.NumLayers - 1;   // the paper's 3, capped so that at least one layer trains
        var method = new MethodSpec
        {
            Kind = d.Kind, Expansion = expansion, Lora = d.Kind == MethodKind.Lora ? d.Lora : null, DepthEvery = d.DepthEvery,
            FreezeLayers = d.FreezeLayers,
        };
        return new TrialPlan(method, d.Phase, d.Seed, checkpointEvery) { Rates = d.Rates };
    }

    /// <summary>Checks an experiment's own settings (its file's keys) for every method it lists.</summary>
    public static void ValidateSettings(ExperimentSpec experiment)
    {
        foreach (var key in experiment.Settings.Keys)
            if (!ByKey.TryGetValue(key, out var row) || row.ExperimentKey is null)
                throw new ArgumentException($"'{key}' cannot be set for a whole experiment.");
        foreach (var method in experiment.Methods) Plan(experiment, method);
    }

    /// <summary>The experiment-file key → sweep key of every setting an experiment file may give.</summary>
    public static IReadOnlyDictionary<string, string> ExperimentKeys { get; } =
        Keys.Where(k => k.ExperimentKey is not null).ToDictionary(k => k.ExperimentKey!, k => k.Key);

    /// <summary>The parameter table of docs/sweeps.md: one row per key.</summary>
    public static string MarkdownTable()
    {
        var table = new StringBuilder("| parameter | experiment file | methods | meaning |\n|---|---|---|---|\n");
        foreach (var key in Keys)
        {
            string methods = key.Methods.SequenceEqual(Trained) ? "all trained" : string.Join(", ", key.Methods.Select(m => m.ToString().ToLowerInvariant()));
            table.Append($"| `{key.Key}` | {(key.ExperimentKey is { } e ? $"`{e}`" : "—")} | {methods} | {key.Meaning} |\n");
        }
        table.Append("\nEach method's own defaults (chosen on the validation pair; an experiment's or a trial's setting overrides them):\n\n");
        table.Append("| method | defaults |\n|---|---|\n");
        foreach (var (kind, defaults) in MethodDefaults)
            table.Append($"| {kind.ToString().ToLowerInvariant()} | {string.Join(", ", defaults.Select(d => $"`{d.Key} = {d.Value}`"))} |\n");
        return table.ToString();
    }

    private static (int First, int Last) Layers(TrialValue value)
    {
        var parts = value.Text.Split('-', StringSplitOptions.TrimEntries);
        bool ok = parts.Length is 1 or 2 && parts.All(x => int.TryParse(x, NumberStyles.None, CultureInfo.InvariantCulture, out _));
        if (!ok) throw value.Error($"must be 'a-b' or 'a' (layer numbers from 0), got '{value.Text}'.");
        int first = int.Parse(parts[0], CultureInfo.InvariantCulture);
        return (first, parts.Length == 2 ? int.Parse(parts[1], CultureInfo.InvariantCulture) : first);
    }
}
