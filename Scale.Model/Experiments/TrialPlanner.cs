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
public sealed record TrialPlan(MethodSpec Method, PhaseSpec Phase, long Seed, int CheckpointEvery)
{
    public GroupRates Rates { get; init; } = new();

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
public sealed record TrialKey(string Key, string? ExperimentKey, string Field, string Meaning, IReadOnlyList<MethodKind> Methods,
                              Action<TrialDraft, TrialValue> Apply);

/// <summary>A setting's text with the name to give in errors (the sweep key or the experiment file's key).</summary>
public sealed record TrialValue(string Text, string Name)
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
public sealed class TrialDraft(MethodKind kind, PhaseSpec phase, long seed)
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
    public RouterSpec Router { get; set; } = new();
    public int DepthEvery { get; set; } = 2;
    public LoraSpec Lora { get; set; } = new();
    public GroupRates Rates { get; set; } = new();
}

/// <summary>
/// The one place a trial's settings become a <see cref="TrialPlan"/>: the method's defaults, then the experiment's
/// settings (its file's `scale`, `lora` and `route` blocks), then the trial's own parameters, each named by one row
/// of <see cref="Keys"/>. A bad value or an impossible combination fails naming the key and the reason.
/// </summary>
public static class TrialPlanner
{
    private static readonly MethodKind[] Trained = [MethodKind.Full, MethodKind.Depth, MethodKind.Lora, MethodKind.Preserve, MethodKind.Adapt, MethodKind.Route];
    private static readonly MethodKind[] Scale = [MethodKind.Preserve, MethodKind.Adapt, MethodKind.Route];
    private static readonly MethodKind[] WithW12 = [MethodKind.Adapt, MethodKind.Route];
    private static readonly MethodKind[] RouteOnly = [MethodKind.Route];

    private static readonly IReadOnlyDictionary<string, ExpansionBlock> BlockNames = new Dictionary<string, ExpansionBlock>
    {
        ["w12"] = ExpansionBlock.W12, ["w21"] = ExpansionBlock.W21, ["w22"] = ExpansionBlock.W22, ["embed_up"] = ExpansionBlock.EmbedUp,
        ["head_up"] = ExpansionBlock.HeadUp, ["norm_up"] = ExpansionBlock.NormUp, ["router"] = ExpansionBlock.Router,
    };

    /// <summary>Every setting a trial may override, in the order of the docs' table.</summary>
    public static readonly IReadOnlyList<TrialKey> Keys =
    [
        new("lr", null, "Phase.LearningRate", "peak learning rate", Trained, (d, v) => d.Phase = d.Phase with { LearningRate = v.Number(positive: true) }),
        new("steps", null, "Phase.Steps", "training steps", Trained, (d, v) => d.Phase = d.Phase with { Steps = v.Int(1) }),
        new("warmup", null, "Phase.WarmupSteps", "warm-up steps", Trained, (d, v) => d.Phase = d.Phase with { WarmupSteps = v.Int(0) }),
        new("seed", null, "Seed", "seed of the expansion's initialisation and of the batch order", Trained, (d, v) => d.Seed = v.Int(0)),
        new("heads_up", "scale.heads-up", "Method.Expansion.HeadsUp", "h_u, extra attention heads", Scale, (d, v) => d.HeadsUp = v.Int(1)),
        new("ffn_up", "scale.ffn-up", "Method.Expansion.FfnUp", "f_u, extra FFN units (default f·h_u/h)", Scale, (d, v) => d.FfnUp = v.Int(0)),
        new("train_norms", null, "Method.Expansion.Train", "whether the new norm gains train (`true`/`false`)", Scale, (d, v) => d.TrainNorms = v.Bool()),
        new("frozen_blocks", null, "Method.Expansion.Train",
            "new blocks kept at their initial values, comma-separated: w12, w21, w22, embed_up, head_up, norm_up, router", Scale, (d, v) =>
            {
                foreach (var name in v.List())
                    d.Frozen.Add(BlockNames.TryGetValue(name, out var block) ? block : throw v.Error($"names an unknown block '{name}'; choose from {string.Join(", ", BlockNames.Keys)}."));
            }),
        new("lr_expansion", "route.lr-expansion", "Rates.Expansion", "learning-rate multiplier of W21, W22, E_u, H_u and the new norm gains", Scale,
            (d, v) => d.Rates = d.Rates with { Expansion = v.Number(positive: true) }),
        new("w12_modules", null, "Method.Expansion.Train", "modules whose W12 trains, comma-separated (`q_proj,o_proj`)", WithW12, (d, v) => d.W12Modules = v.List()),
        new("w12_layers", null, "Method.Expansion.Train", "layers whose W12 trains: `a-b` or `a` (from 0)", WithW12, (d, v) => d.W12Layers = Layers(v)),
        new("w12_last", null, "Method.Expansion.Train", "W12 trains only in the last k layers", WithW12, (d, v) => d.W12Last = v.Int(1)),
        new("lr_w12", null, "Rates.W12", "learning-rate multiplier of W12", WithW12, (d, v) => d.Rates = d.Rates with { W12 = v.Number(positive: true) }),
        new("router_input", "route.input", "Method.Expansion.Router.Input", "what Route's gates read: hidden, confidence (the base's entropy and top probability) or both", RouteOnly,
            (d, v) => d.Router = d.Router with { Input = v.Choice<RouterInput>() }),
        new("router_gates", "route.gates", "Method.Expansion.Router.Gates", "where Route's gates sit: blocks, head or both", RouteOnly,
            (d, v) => d.Router = d.Router with { Gates = v.Choice<GatePlacement>() }),
        new("router_hard", "route.hard", "Method.Expansion.Router.Hard", "straight-through hard 0/1 gates (`true`/`false`)", RouteOnly,
            (d, v) => d.Router = d.Router with { Hard = v.Bool() }),
        new("router_penalty", "route.penalty", "Method.Expansion.Router.Penalty", "λ of the penalty λ·mean(g) on the gates", RouteOnly,
            (d, v) => d.Router = d.Router with { Penalty = v.Number(positive: false) }),
        new("router_init_bias", "route.init-bias", "Method.Expansion.Router.InitBias", "initial bias of Route's gates", RouteOnly,
            (d, v) => d.Router = d.Router with { InitBias = v.Number(positive: false) }),
        new("lr_router", "route.lr-router", "Rates.Router", "learning-rate multiplier of Route's gates", RouteOnly,
            (d, v) => d.Rates = d.Rates with { Router = v.Number(positive: true) }),
        new("lr_base", null, "Rates.Base", "learning-rate multiplier of trained base weights", [MethodKind.Full, MethodKind.Depth],
            (d, v) => d.Rates = d.Rates with { Base = v.Number(positive: true) }),
        new("depth_every", "scale.depth-every", "Method.DepthEvery", "depth expansion: insert a block after every k-th", [MethodKind.Depth], (d, v) => d.DepthEvery = v.Int(1)),
        new("lora_rank", "lora.rank", "Method.Lora.Rank", "LoRA rank r", [MethodKind.Lora], (d, v) => d.Lora = d.Lora with { Rank = v.Int(1) }),
        new("lora_alpha", "lora.alpha", "Method.Lora.Alpha", "LoRA alpha (the update is alpha/r·B·A)", [MethodKind.Lora], (d, v) => d.Lora = d.Lora with { Alpha = v.Number(positive: true) }),
        new("lora_targets", "lora.targets", "Method.Lora.TargetModules", "LoRA's target modules, comma-separated", [MethodKind.Lora], (d, v) => d.Lora = d.Lora with { TargetModules = v.List() }),
        new("lr_lora", null, "Rates.Lora", "learning-rate multiplier of LoRA's A and B", [MethodKind.Lora], (d, v) => d.Rates = d.Rates with { Lora = v.Number(positive: true) }),
    ];

    private static readonly IReadOnlyDictionary<string, TrialKey> ByKey = Keys.ToDictionary(k => k.Key);

    /// <summary>
    /// Each method's own defaults, as settings (applied before the experiment's): Route's learning-rate multipliers
    /// are the configuration the Route search selected (docs/route-search.md, trial route-c59790318a).
    /// </summary>
    public static readonly IReadOnlyDictionary<MethodKind, IReadOnlyDictionary<string, string>> MethodDefaults =
        new Dictionary<MethodKind, IReadOnlyDictionary<string, string>>
        {
            [MethodKind.Route] = new Dictionary<string, string> { ["lr_expansion"] = "2.06", ["lr_router"] = "13.8" },
        };

    public static readonly IReadOnlyList<string> MethodNames = ["frozen", "full", "preserve", "adapt", "route", "depth", "lora"];

    public static MethodKind KindOf(string method) => method.Trim().ToLowerInvariant() switch
    {
        "frozen" => MethodKind.Frozen,
        "full" or "fft" => MethodKind.Full,
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
    public static TrialPlan Plan(ExperimentSpec experiment, string method, IReadOnlyDictionary<string, string>? parameters = null, int? checkpointEvery = null)
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
        return Build(draft, experiment, checkpointEvery ?? draft.Phase.Steps);
    }

    /// <summary>The method as <see cref="Plan"/> builds it on <paramref name="experiment"/> without a trial's own settings.</summary>
    public static MethodSpec Method(ExperimentSpec experiment, string method) => Plan(experiment, method).Method;

    private static TrialPlan Build(TrialDraft d, ExperimentSpec experiment, int checkpointEvery)
    {
        if (checkpointEvery < 1) throw new ArgumentException($"checkpoint_every must be at least 1, got {checkpointEvery}.");
        d.Phase.Validate("continual");
        var config = experiment.Model with { VocabSize = Math.Max(experiment.VocabSize, 1) };
        var (first, last) = d.W12Layers is { } range ? range : ((int?)null, (int?)null);
        if (d.W12Last is { } lastK)
        {
            if (d.W12Layers is not null) throw new ArgumentException("set either 'w12_layers' or 'w12_last', not both.");
            if (lastK > config.NumLayers) throw new ArgumentException($"parameter 'w12_last' {lastK} is above the base's {config.NumLayers} layers.");
            (first, last) = (config.NumLayers - lastK, config.NumLayers - 1);
        }
        ExpansionSpec? expansion = d.Kind switch
        {
            MethodKind.Preserve => ExpansionSpec.Preserve(d.HeadsUp, d.FfnUp),
            MethodKind.Adapt => ExpansionSpec.Adapt(d.HeadsUp, d.FfnUp, d.W12Modules, first, last),
            MethodKind.Route => ExpansionSpec.Route(d.HeadsUp, d.FfnUp, d.Router, d.W12Modules, first, last),
            _ => null,
        };
        if (expansion is not null)
        {
            if (!d.TrainNorms) d.Frozen.Add(ExpansionBlock.NormUp);
            expansion = (expansion with { Train = expansion.Train.Where(r => !d.Frozen.Contains(r.Block)).ToList() }).Validate(config);
        }
        if (d.Kind == MethodKind.Lora) d.Lora.Validate(config);
        if (d.Kind == MethodKind.Depth && d.DepthEvery > config.NumLayers)
            throw new ArgumentException($"parameter 'depth_every' {d.DepthEvery} is above the base's {config.NumLayers} layers: nothing would be inserted.");
        var method = new MethodSpec
        {
            Kind = d.Kind, Expansion = expansion, Lora = d.Kind == MethodKind.Lora ? d.Lora : null, DepthEvery = d.DepthEvery,
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
