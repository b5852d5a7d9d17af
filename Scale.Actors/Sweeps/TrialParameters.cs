using System.Globalization;
using Scale.Model;
using Scale.Model.Experiments;
using Scale.Model.Upscaling;

namespace Scale.Actors.Sweeps;

/// <summary>
/// The hyper-parameters a sweep may set per trial, which methods each applies to, and how a trial's settings
/// become a <see cref="TrialPlan"/>. Every trial of a sweep file is planned when the file is loaded, so a bad value
/// or an impossible combination is rejected before anything runs.
/// </summary>
public static class TrialParameters
{
    private static readonly MethodKind[] Trained = [MethodKind.Full, MethodKind.Depth, MethodKind.Lora, MethodKind.Preserve, MethodKind.Adapt, MethodKind.Route];
    private static readonly MethodKind[] Scale = [MethodKind.Preserve, MethodKind.Adapt, MethodKind.Route];
    private static readonly MethodKind[] WithW12 = [MethodKind.Adapt, MethodKind.Route];

    /// <summary>Each parameter, what it means, and the methods it applies to.</summary>
    public static readonly IReadOnlyDictionary<string, (string Meaning, MethodKind[] Methods)> Known =
        new Dictionary<string, (string, MethodKind[])>
        {
            ["lr"] = ("peak learning rate", Trained),
            ["steps"] = ("training steps", Trained),
            ["warmup"] = ("warm-up steps", Trained),
            ["seed"] = ("seed of the expansion's initialisation and of the batch order", Trained),
            ["heads_up"] = ("h_u, extra attention heads", Scale),
            ["ffn_up"] = ("f_u, extra FFN units", Scale),
            ["train_norms"] = ("whether the new norm gains train (true/false)", Scale),
            ["frozen_blocks"] = ("new blocks kept at their initial values, comma-separated: w12, w21, w22, embed_up, head_up, norm_up, router", Scale),
            ["lr_expansion"] = ("learning-rate multiplier of W21, W22, E_u, H_u and the new norm gains", Scale),
            ["w12_modules"] = ("modules whose W12 trains, comma-separated (q_proj,…,down_proj)", WithW12),
            ["w12_layers"] = ("layers whose W12 trains: 'a-b' or 'a'", WithW12),
            ["lr_w12"] = ("learning-rate multiplier of W12", WithW12),
            ["router_penalty"] = ("Route's λ on the mean gate", [MethodKind.Route]),
            ["router_init_bias"] = ("initial bias of Route's gates", [MethodKind.Route]),
            ["lr_router"] = ("learning-rate multiplier of Route's routers", [MethodKind.Route]),
            ["router_input"] = ("what the routers read: hidden, confidence (the base's entropy and top probability) or both", [MethodKind.Route]),
            ["router_gates"] = ("where gates sit: blocks, head or both", [MethodKind.Route]),
            ["router_hard"] = ("straight-through hard 0/1 gates (true/false)", [MethodKind.Route]),
            ["w12_last"] = ("W12 trains only in the last k layers", WithW12),
            ["lr_base"] = ("learning-rate multiplier of trained base weights", [MethodKind.Full, MethodKind.Depth]),
            ["depth_every"] = ("insert a block after every k-th", [MethodKind.Depth]),
            ["lora_rank"] = ("LoRA rank", [MethodKind.Lora]),
            ["lora_alpha"] = ("LoRA alpha", [MethodKind.Lora]),
            ["lr_lora"] = ("learning-rate multiplier of LoRA's A and B", [MethodKind.Lora]),
        };

    /// <summary>The plan of <paramref name="trial"/> on <paramref name="experiment"/>; throws ArgumentException naming the parameter and the reason.</summary>
    public static TrialPlan Plan(ExperimentSpec experiment, TrialSpec trial, int checkpointEvery)
    {
        var kind = MethodSpec.Preset(trial.Method).Kind;
        var p = trial.Parameters;
        foreach (var key in p.Keys)
        {
            if (!Known.TryGetValue(key, out var known))
                throw new ArgumentException($"unknown parameter '{key}'; known: {string.Join(", ", Known.Keys)}.");
            if (!known.Methods.Contains(kind))
                throw new ArgumentException($"parameter '{key}' ({known.Meaning}) does not apply to method '{trial.Method}'; it applies to {string.Join(", ", known.Methods.Select(m => m.ToString().ToLowerInvariant()))}.");
        }
        int? Int(string key, int min)
        {
            if (!p.TryGetValue(key, out var text)) return null;
            if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
                throw new ArgumentException($"parameter '{key}' must be a whole number, got '{text}'.");
            return value >= min ? value : throw new ArgumentException($"parameter '{key}' must be at least {min}, got {value}.");
        }
        double? Number(string key, bool positive)
        {
            if (!p.TryGetValue(key, out var text)) return null;
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
                throw new ArgumentException($"parameter '{key}' must be a number, got '{text}'.");
            if (positive && !(value > 0)) throw new ArgumentException($"parameter '{key}' must be above 0, got {text}.");
            return value;
        }

        bool? Bool(string key)
        {
            if (!p.TryGetValue(key, out var text)) return null;
            return bool.TryParse(text, out var value) ? value : throw new ArgumentException($"parameter '{key}' must be true or false, got '{text}'.");
        }
        T Choice<T>(string key, T fallback) where T : struct, Enum
        {
            if (!p.TryGetValue(key, out var text)) return fallback;
            return !text.Any(char.IsDigit) && Enum.TryParse<T>(text, ignoreCase: true, out var value) && Enum.IsDefined(value)
                ? value
                : throw new ArgumentException($"parameter '{key}' must be one of {string.Join(", ", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))}, got '{text}'.");
        }

        var phase = experiment.Continual with
        {
            LearningRate = Number("lr", positive: true) ?? experiment.Continual.LearningRate,
            Steps = Int("steps", 1) ?? experiment.Continual.Steps,
            WarmupSteps = Int("warmup", 0) ?? experiment.Continual.WarmupSteps,
        };
        phase.Validate("continual");
        int headsUp = Int("heads_up", 1) ?? experiment.HeadsUp;
        int? ffnUp = Int("ffn_up", 0) ?? experiment.FfnUp;
        IReadOnlyList<string>? modules = p.TryGetValue("w12_modules", out var list)
            ? list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) : null;
        var (first, last) = p.TryGetValue("w12_layers", out var range) ? Layers(range) : (null, null);
        if (Int("w12_last", 1) is { } lastK)
        {
            if (range is not null) throw new ArgumentException("set either 'w12_layers' or 'w12_last', not both.");
            if (lastK > experiment.Model.NumLayers)
                throw new ArgumentException($"parameter 'w12_last' {lastK} is above the base's {experiment.Model.NumLayers} layers.");
            (first, last) = (experiment.Model.NumLayers - lastK, experiment.Model.NumLayers - 1);
        }
        var router = experiment.Router with
        {
            Penalty = Number("router_penalty", positive: false) ?? experiment.Router.Penalty,
            InitBias = Number("router_init_bias", positive: false) ?? experiment.Router.InitBias,
            Input = Choice("router_input", experiment.Router.Input),
            Gates = Choice("router_gates", experiment.Router.Gates),
            Hard = Bool("router_hard") ?? experiment.Router.Hard,
        };
        ExpansionSpec? expansion = kind switch
        {
            MethodKind.Preserve => ExpansionSpec.Preserve(headsUp, ffnUp),
            MethodKind.Adapt => ExpansionSpec.Adapt(headsUp, ffnUp, modules, first, last),
            MethodKind.Route => ExpansionSpec.Route(headsUp, ffnUp, router, modules, first, last),
            _ => null,
        };
        if (expansion is not null && p.TryGetValue("train_norms", out var norms))
        {
            if (Bool("train_norms") == false) expansion = expansion with { Train = expansion.Train.Where(r => r.Block != ExpansionBlock.NormUp).ToList() };
        }
        if (expansion is not null && p.TryGetValue("frozen_blocks", out var frozenList))
        {
            var names = new Dictionary<string, ExpansionBlock>
            {
                ["w12"] = ExpansionBlock.W12, ["w21"] = ExpansionBlock.W21, ["w22"] = ExpansionBlock.W22, ["embed_up"] = ExpansionBlock.EmbedUp,
                ["head_up"] = ExpansionBlock.HeadUp, ["norm_up"] = ExpansionBlock.NormUp, ["router"] = ExpansionBlock.Router,
            };
            var frozen = new HashSet<ExpansionBlock>();
            foreach (var name in frozenList.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                frozen.Add(names.TryGetValue(name, out var block) ? block
                    : throw new ArgumentException($"parameter 'frozen_blocks': unknown block '{name}'; choose from {string.Join(", ", names.Keys)}."));
            expansion = expansion with { Train = expansion.Train.Where(r => !frozen.Contains(r.Block)).ToList() };
        }
        var config = experiment.Model with { VocabSize = Math.Max(experiment.VocabSize, 1) };
        expansion?.Validate(config);
        var lora = experiment.Lora with
        {
            Rank = Int("lora_rank", 1) ?? experiment.Lora.Rank,
            Alpha = Number("lora_alpha", positive: true) ?? experiment.Lora.Alpha,
        };
        if (kind == MethodKind.Lora) lora.Validate(config);
        var method = new MethodSpec
        {
            Kind = kind, Expansion = expansion, Lora = kind == MethodKind.Lora ? lora : null,
            DepthEvery = Int("depth_every", 1) ?? experiment.DepthEvery,
            GroupLearningRates = experiment.MethodFor(trial.Method).GroupLearningRates,
        };
        if (kind == MethodKind.Depth && method.DepthEvery > config.NumLayers)
            throw new ArgumentException($"parameter 'depth_every' {method.DepthEvery} is above the base's {config.NumLayers} layers: nothing would be inserted.");
        var groups = new Dictionary<string, double>(method.GroupLearningRates);
        foreach (var (key, group) in new[] { ("lr_expansion", "expansion"), ("lr_w12", "w12"), ("lr_router", "router"), ("lr_base", "base"), ("lr_lora", "lora") })
            if (Number(key, positive: true) is { } multiplier) groups[group] = multiplier;
        return new TrialPlan(method, phase, Int("seed", 0) ?? experiment.Seed, checkpointEvery) { GroupLearningRates = groups };
    }

    private static (int? First, int? Last) Layers(string range)
    {
        var parts = range.Split('-', StringSplitOptions.TrimEntries);
        bool ok = parts.Length is 1 or 2 && parts.All(x => int.TryParse(x, NumberStyles.None, CultureInfo.InvariantCulture, out _));
        if (!ok) throw new ArgumentException($"parameter 'w12_layers' must be 'a-b' or 'a' (layer numbers from 0), got '{range}'.");
        int first = int.Parse(parts[0], CultureInfo.InvariantCulture);
        return (first, parts.Length == 2 ? int.Parse(parts[1], CultureInfo.InvariantCulture) : first);
    }
}
