using System.Globalization;
using Scale.Model.Transformer;
using TorchSharp;
using static TorchSharp.torch;

namespace Scale.Model.Upscaling;

/// <summary>How SCALE-Route picks, per token, between the preservation head and the adaptation head.</summary>
internal enum RouteRule
{
    /// <summary>The paper's: cosine similarity of the two logit vectors ≥ τ → the preservation head.</summary>
    Cosine,
    /// <summary>As <see cref="Cosine"/>, on the two heads' probabilities.</summary>
    CosineProb,
    /// <summary>The base's own confidence: the preservation head's top probability ≥ θ → the preservation head.</summary>
    Confidence,
    /// <summary>
    /// Context novelty (ours): if the base is surprised by the context — its largest surprisal (nats) over the tokens so
    /// far, or over a window of the last w of them — ≥ s, the adaptation head; otherwise the preservation head.
    /// </summary>
    Novelty,
    /// <summary>
    /// Calibrated context novelty (ours, for running text): the base's mean surprisal over the last w tokens read, against
    /// a threshold calibrated on the old data — the q-quantile of the same statistic over a calibration slice of the old
    /// data, disjoint from the held-out set retention is scored on (<see cref="RoutingCalibration"/>) — so that no corpus
    /// needs a threshold of its own: above it, the adaptation head; otherwise the preservation head.
    /// </summary>
    NoveltyAuto,
}

/// <summary>
/// A routing rule with its threshold (τ, θ, s, or for novelty-auto the quantile q) and, for novelty, its window (0: every
/// token so far). A novelty-auto rule routes only once calibrated: <see cref="Calibrated"/> is its threshold in nats.
/// </summary>
internal sealed record RoutingSpec(RouteRule Rule, double Threshold, int Window = 0)
{
    /// <summary>novelty-auto's threshold in nats, from the old data's calibration slice (<see cref="RoutingCalibration"/>); null until calibrated.</summary>
    public double? Calibrated { get; init; }

    /// <summary>Whether the rule needs a calibration before it can route.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool NeedsCalibration => Rule == RouteRule.NoveltyAuto && Calibrated is null;

    /// <summary>novelty-auto's window when none is given.</summary>
    public const int DefaultAutoWindow = 32;

    /// <summary>The threshold each rule starts from: the paper's τ = 0.5 for cosine, θ = 0.5, s = 10 nats (Route's default).</summary>
    public static double DefaultThreshold(RouteRule rule) => rule switch
    {
        RouteRule.Cosine or RouteRule.CosineProb => 0.5,
        RouteRule.Confidence => 0.5,
        RouteRule.Novelty => 10.0,
        RouteRule.NoveltyAuto => 0.99,
        _ => throw new ArgumentOutOfRangeException(nameof(rule)),
    };

    public static IReadOnlyList<string> RuleNames { get; } = ["cosine", "cosine-prob", "confidence", "novelty", "novelty-auto"];

    public static RouteRule ParseRule(string name) => name.Trim().ToLowerInvariant() switch
    {
        "cosine" => RouteRule.Cosine,
        "cosine-prob" => RouteRule.CosineProb,
        "confidence" => RouteRule.Confidence,
        "novelty" => RouteRule.Novelty,
        "novelty-auto" => RouteRule.NoveltyAuto,
        _ => throw new ArgumentException($"unknown routing rule '{name}'; choose from {string.Join(", ", RuleNames)}."),
    };

    public static string NameOf(RouteRule rule) => RuleNames[(int)rule];

    /// <summary>"RULE" or "RULE:THRESHOLD" (novelty also "novelty:S:WINDOW", novelty-auto "novelty-auto:Q:WINDOW"), e.g. cosine:0.5, novelty:6, novelty-auto:0.99:32.</summary>
    public static RoutingSpec Parse(string text)
    {
        var parts = text.Split(':', StringSplitOptions.TrimEntries);
        var rule = ParseRule(parts[0]);
        double threshold = parts.Length > 1 ? Number(parts[1], text) : DefaultThreshold(rule);
        int window = rule == RouteRule.NoveltyAuto ? DefaultAutoWindow : 0;
        if (parts.Length > 2)
        {
            if (rule is not (RouteRule.Novelty or RouteRule.NoveltyAuto))
                throw new ArgumentException($"routing '{text}': only novelty and novelty-auto take a window (novelty:S:WINDOW, novelty-auto:Q:WINDOW).");
            if (!int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out window))
                throw new ArgumentException($"routing '{text}': the window must be a whole number of tokens (0: all so far).");
        }
        if (parts.Length > 3) throw new ArgumentException($"routing '{text}' must be RULE, RULE:THRESHOLD or RULE:THRESHOLD:WINDOW (novelty, novelty-auto).");
        try
        {
            return new RoutingSpec(rule, threshold, window).Validate();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"routing '{text}': {e.Message}");
        }
    }

    private static double Number(string value, string text)
        => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v)
            ? v : throw new ArgumentException($"routing '{text}': the threshold must be a number, got '{value}'.");

    public RoutingSpec Validate()
    {
        if (!double.IsFinite(Threshold)) throw new ArgumentException($"routing threshold must be a finite number, got {Threshold}.");
        if (Window < 0) throw new ArgumentException($"routing window must be zero (every token so far) or more, got {Window}.");
        if (Rule == RouteRule.NoveltyAuto && !(Threshold is > 0 and < 1))
            throw new ArgumentException($"novelty-auto's quantile must be between 0 and 1 (e.g. 0.99), got {Threshold}.");
        if (Rule == RouteRule.NoveltyAuto && Window < 1)
            throw new ArgumentException($"novelty-auto's window must be at least 1 token, got {Window}.");
        return this;
    }

    /// <summary>The rule as written (for novelty-auto, its quantile and window; the calibrated threshold is <see cref="Calibrated"/>).</summary>
    public override string ToString()
        => $"{NameOf(Rule)}:{Threshold.ToString(CultureInfo.InvariantCulture)}" + (Window > 0 ? $":{Window}" : "");
}

/// <summary>
/// The routing rules as pure functions of the two heads' logits (and, for novelty, the tokens the base read):
/// each returns, per token, whether the adaptation head answers.
/// </summary>
internal static class Routing
{
    /// <summary>(B, T) booleans: true where the adaptation head answers. Logits (B, T, V); tokens (B, T).</summary>
    public static Tensor ChooseAdaptation(RoutingSpec spec, Tensor preservation, Tensor adaptation, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var held = Scalars.Scope();
        var threshold = held.Of(spec.Threshold);
        var choice = spec.Rule switch
        {
            RouteRule.Cosine => nn.functional.cosine_similarity(preservation, adaptation, -1).lt(threshold),
            RouteRule.CosineProb => nn.functional.cosine_similarity(preservation.softmax(-1), adaptation.softmax(-1), -1).lt(threshold),
            RouteRule.Confidence => preservation.softmax(-1).amax([-1L]).lt(threshold),
            RouteRule.Novelty => ContextSurprisal(preservation, tokens, spec.Window).ge(threshold),
            RouteRule.NoveltyAuto => MeanSurprisal(preservation, tokens, spec.Window).gt(held.Of(spec.Calibrated
                ?? throw new InvalidOperationException($"routing {spec} is not calibrated: RoutingCalibration.Calibrate gives its threshold from the old data."))),
            _ => throw new ArgumentOutOfRangeException(nameof(spec)),
        };
        return choice.MoveToOuterDisposeScope();
    }

    /// <summary>(B, T): −log p_base(t_i | t_&lt;i) at each position i; the first token, which nothing predicts, reads 0.</summary>
    public static Tensor Surprisal(Tensor preservation, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        long t = tokens.shape[1];
        if (t == 1) return torch.zeros(tokens.shape[0], 1, dtype: ScalarType.Float32, device: preservation.device).MoveToOuterDisposeScope();
        var logProbs = nn.functional.log_softmax(preservation.narrow(1, 0, t - 1), -1);                               // (B, T−1, V)
        var read = logProbs.gather(-1, tokens.narrow(1, 1, t - 1).unsqueeze(-1)).squeeze(-1).neg();                   // (B, T−1)
        return torch.cat([torch.zeros(tokens.shape[0], 1, dtype: read.dtype, device: read.device), read], 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// (B, T): at position i, the mean surprisal of the tokens read in the last <paramref name="window"/> positions (i − w + 1 … i,
    /// from position 1 on: the first token is never counted); 0 at position 0, where nothing has been read. Causal by
    /// construction: position i reads only surprisals of tokens ≤ i, each from the base's logits before it.
    /// </summary>
    public static Tensor MeanSurprisal(Tensor preservation, Tensor tokens, int window)
    {
        using var scope = NewDisposeScope();
        var surprisal = Surprisal(preservation, tokens);                                              // (B, T), 0 at position 0
        long t = surprisal.shape[1];
        var total = surprisal.cumsum(1, ScalarType.Float64);                                          // Σ_{j ≤ i}
        var before = torch.cat([torch.zeros(surprisal.shape[0], Math.Min(window, t), dtype: ScalarType.Float64, device: total.device),
                                total.narrow(1, 0, t - Math.Min(window, t))], 1);                     // Σ_{j ≤ i − w}
        var positions = torch.arange(t, dtype: ScalarType.Float64, device: total.device);             // i
        var counted = torch.minimum(positions, torch.full(t, (double)window, dtype: ScalarType.Float64, device: total.device)).clamp_min(1);   // tokens 1 … i within the window
        return (total - before).div(counted).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>Per token, the adaptation head's logits where the rule says so, the preservation head's elsewhere.</summary>
    public static Tensor Route(RoutingSpec spec, Tensor preservation, Tensor adaptation, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var adapt = ChooseAdaptation(spec, preservation, adaptation, tokens).unsqueeze(-1);   // (B, T, 1)
        return torch.where(adapt, adaptation, preservation).MoveToOuterDisposeScope();        // (B, T, V)
    }

    /// <summary>
    /// (B, T): at position i, the largest surprisal −log p_base(t_j | t_&lt;j) over the tokens j ≤ i read so far (the
    /// last <paramref name="window"/> of them when it is above 0); the first token, which nothing predicts, counts 0.
    /// </summary>
    public static Tensor ContextSurprisal(Tensor preservation, Tensor tokens, int window)
    {
        using var scope = NewDisposeScope();
        long t = tokens.shape[1];
        var logProbs = nn.functional.log_softmax(preservation, -1);                             // (B, T, V)
        var surprisal = torch.zeros(tokens.shape[0], t, dtype: logProbs.dtype, device: logProbs.device);   // (B, T)
        if (t > 1)
        {
            // Token j (j ≥ 1) is predicted at position j − 1.
            var read = logProbs.narrow(1, 0, t - 1).gather(-1, tokens.narrow(1, 1, t - 1).unsqueeze(-1)).squeeze(-1).neg();   // (B, T−1)
            surprisal = torch.cat([torch.zeros(tokens.shape[0], 1, dtype: read.dtype, device: read.device), read], 1);
        }
        Tensor result;
        if (window <= 0) result = surprisal.cummax(1).values;
        else
        {
            result = surprisal.clone();
            for (int k = 1; k < window && k < t; k++)
                result = torch.maximum(result, torch.cat([torch.zeros(tokens.shape[0], k, dtype: surprisal.dtype, device: surprisal.device),
                                                          surprisal.narrow(1, 0, t - k)], 1));
        }
        return result.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// novelty-auto's threshold from the old data (docs/method.md): the base reads a calibration slice of the old data — a
/// slice disjoint from the held-out set that retention is scored on — and the threshold is the q-quantile of its mean
/// surprisal over w tokens at every position that has read a token. One pass of the base over the slice; the result
/// depends on the base and that slice only, never on the new data or the held-out set.
/// </summary>
internal static class RoutingCalibration
{
    /// <summary>Positions of the slice scored at most (its windows are taken evenly spread when it has more).</summary>
    public const int MaxWindows = 512;

    public static double Threshold(CausalLM baseModel, Data.ITokenWindows slice, double quantile, int window, int batchSize = 16)
    {
        if (slice.Count == 0) throw new ArgumentException("the calibration slice of the old data is empty: novelty-auto has nothing to calibrate on.");
        if (!(quantile is > 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(quantile), $"must be between 0 and 1, got {quantile}");
        var indices = Enumerable.Range(0, Math.Min(slice.Count, MaxWindows)).Select(i => (int)((long)i * slice.Count / Math.Min(slice.Count, MaxWindows))).ToList();
        var values = new List<float>();
        using var noGrad = no_grad();
        for (int start = 0; start < indices.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var batch = slice.Batch(indices.Skip(start).Take(batchSize).ToList()).to(baseModel.Device);
            var tokens = batch.narrow(1, 0, batch.shape[1] - 1);                               // (B, T), as perplexity reads a window
            var statistic = Routing.MeanSurprisal(baseModel.forward(tokens), tokens, window);  // (B, T)
            values.AddRange(statistic.narrow(1, 1, statistic.shape[1] - 1).cpu().data<float>().ToArray());   // position 0 has read nothing
        }
        values.Sort();
        int at = Math.Clamp((int)Math.Ceiling(quantile * values.Count) - 1, 0, values.Count - 1);
        return values[at];
    }
}
