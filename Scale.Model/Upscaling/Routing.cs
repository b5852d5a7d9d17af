using System.Globalization;
using Scale.Model.Transformer;
using TorchSharp;
using static TorchSharp.torch;

namespace Scale.Model.Upscaling;

/// <summary>How SCALE-Route picks, per token, between the preservation head and the adaptation head.</summary>
public enum RouteRule
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
}

/// <summary>A routing rule with its threshold (τ, θ or s) and, for novelty, its window (0: every token so far).</summary>
public sealed record RoutingSpec(RouteRule Rule, double Threshold, int Window = 0)
{
    /// <summary>The threshold each rule starts from: the paper's τ = 0.5 for cosine, θ = 0.5, s = 10 nats (Route's default).</summary>
    public static double DefaultThreshold(RouteRule rule) => rule switch
    {
        RouteRule.Cosine or RouteRule.CosineProb => 0.5,
        RouteRule.Confidence => 0.5,
        RouteRule.Novelty => 10.0,
        _ => throw new ArgumentOutOfRangeException(nameof(rule)),
    };

    public static IReadOnlyList<string> RuleNames { get; } = ["cosine", "cosine-prob", "confidence", "novelty"];

    public static RouteRule ParseRule(string name) => name.Trim().ToLowerInvariant() switch
    {
        "cosine" => RouteRule.Cosine,
        "cosine-prob" => RouteRule.CosineProb,
        "confidence" => RouteRule.Confidence,
        "novelty" => RouteRule.Novelty,
        _ => throw new ArgumentException($"unknown routing rule '{name}'; choose from {string.Join(", ", RuleNames)}."),
    };

    public static string NameOf(RouteRule rule) => RuleNames[(int)rule];

    /// <summary>"RULE" or "RULE:THRESHOLD" (novelty also "novelty:S:WINDOW"), e.g. cosine:0.5, novelty:6.</summary>
    public static RoutingSpec Parse(string text)
    {
        var parts = text.Split(':', StringSplitOptions.TrimEntries);
        var rule = ParseRule(parts[0]);
        double threshold = parts.Length > 1 ? Number(parts[1], text) : DefaultThreshold(rule);
        int window = 0;
        if (parts.Length > 2)
        {
            if (rule != RouteRule.Novelty) throw new ArgumentException($"routing '{text}': only novelty takes a window (novelty:S:WINDOW).");
            if (!int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out window))
                throw new ArgumentException($"routing '{text}': the window must be a whole number of tokens (0: all so far).");
        }
        if (parts.Length > 3) throw new ArgumentException($"routing '{text}' must be RULE, RULE:THRESHOLD or novelty:S:WINDOW.");
        return new RoutingSpec(rule, threshold, window).Validate();
    }

    private static double Number(string value, string text)
        => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v)
            ? v : throw new ArgumentException($"routing '{text}': the threshold must be a number, got '{value}'.");

    public RoutingSpec Validate()
    {
        if (!double.IsFinite(Threshold)) throw new ArgumentException($"routing threshold must be a finite number, got {Threshold}.");
        if (Window < 0) throw new ArgumentException($"routing window must be zero (every token so far) or more, got {Window}.");
        return this;
    }

    public override string ToString()
        => $"{NameOf(Rule)}:{Threshold.ToString(CultureInfo.InvariantCulture)}" + (Window > 0 ? $":{Window}" : "");
}

/// <summary>
/// The routing rules as pure functions of the two heads' logits (and, for novelty, the tokens the base read):
/// each returns, per token, whether the adaptation head answers.
/// </summary>
public static class Routing
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
            _ => throw new ArgumentOutOfRangeException(nameof(spec)),
        };
        return choice.MoveToOuterDisposeScope();
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
