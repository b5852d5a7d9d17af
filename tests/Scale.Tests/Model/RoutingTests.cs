using Scale.Model.Upscaling;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

/// <summary>The routing rules are pure functions of the two heads' logits (and the tokens read), checked on hand-made values.</summary>
public class RoutingTests
{
    private static Tensor Logits(params float[][] rows) => tensor(rows.SelectMany(r => r).ToArray()).reshape(1, rows.Length, rows[0].Length);   // (1, T, V)

    private static bool[] Choice(RoutingSpec spec, Tensor preservation, Tensor adaptation, long[]? tokens = null)
    {
        using var t = tensor(tokens ?? new long[preservation.shape[1]]).unsqueeze(0);
        using var choice = Routing.ChooseAdaptation(spec, preservation, adaptation, t);
        return choice[0].data<bool>().ToArray();
    }

    [Fact]
    public void Cosine_keeps_the_preservation_head_where_the_logit_vectors_agree_to_tau()
    {
        using var preservation = Logits([1, 0, 0], [1, 0, 0], [1, 0, 0]);
        using var adaptation = Logits([2, 0, 0], [1, 1, 0], [0, 1, 0]);   // cosines 1, 0.707, 0

        Assert.Equal([false, false, true], Choice(new RoutingSpec(RouteRule.Cosine, 0.5), preservation, adaptation));
        Assert.Equal([false, true, true], Choice(new RoutingSpec(RouteRule.Cosine, 0.8), preservation, adaptation));
    }

    [Fact]
    public void Cosine_on_probabilities_compares_the_softmaxes()
    {
        using var preservation = Logits([5, 0], [5, 0]);
        using var adaptation = Logits([6, 0], [0, 5]);   // the same favourite, then the opposite one

        Assert.Equal([false, true], Choice(new RoutingSpec(RouteRule.CosineProb, 0.5), preservation, adaptation));
    }

    [Fact]
    public void Confidence_keeps_the_preservation_head_where_the_base_is_sure_to_theta()
    {
        using var preservation = Logits([4, 0, 0], [0.1f, 0, 0]);   // top probabilities 0.965 and about 0.36
        using var adaptation = Logits([0, 0, 9], [0, 0, 9]);

        Assert.Equal([false, true], Choice(new RoutingSpec(RouteRule.Confidence, 0.5), preservation, adaptation));
        Assert.Equal([true, true], Choice(new RoutingSpec(RouteRule.Confidence, 0.99), preservation, adaptation));
    }

    [Fact]
    public void Novelty_adapts_from_the_first_surprising_token_of_the_context_on_or_within_a_window()
    {
        // Base logits over 2 tokens: it expects token 0 everywhere (p ≈ 0.9999), so reading token 1 surprises it (≈ 9 nats).
        using var preservation = Logits([9, 0], [9, 0], [9, 0], [9, 0], [9, 0]);
        using var adaptation = Logits([0, 0], [0, 0], [0, 0], [0, 0], [0, 0]);
        long[] tokens = [0, 0, 1, 0, 0];   // token 2 is the surprise (predicted at position 1, read at position 2)

        Assert.Equal([false, false, true, true, true], Choice(new RoutingSpec(RouteRule.Novelty, 4), preservation, adaptation, tokens));
        Assert.Equal([false, false, true, true, false], Choice(new RoutingSpec(RouteRule.Novelty, 4, Window: 2), preservation, adaptation, tokens));
        Assert.Equal([false, false, false, false, false], Choice(new RoutingSpec(RouteRule.Novelty, 10), preservation, adaptation, tokens));
    }

    [Fact]
    public void Route_takes_each_tokens_logits_from_the_chosen_head()
    {
        using var preservation = Logits([1, 0, 0], [1, 0, 0]);
        using var adaptation = Logits([2, 0, 0], [0, 1, 0]);
        using var tokens = zeros(1, 2, dtype: ScalarType.Int64);

        using var routed = Routing.Route(new RoutingSpec(RouteRule.Cosine, 0.5), preservation, adaptation, tokens);

        Assert.Equal(new float[] { 1, 0, 0, 0, 1, 0 }, routed.data<float>().ToArray());
    }

    [Theory]
    [InlineData("cosine", "Cosine", 0.5, 0)]
    [InlineData("confidence:0.7", "Confidence", 0.7, 0)]
    [InlineData("novelty:6:16", "Novelty", 6.0, 16)]
    [InlineData("cosine-prob:0.9", "CosineProb", 0.9, 0)]
    public void Routing_rules_parse_from_rule_threshold_and_window(string text, string rule, double threshold, int window)
        => Assert.Equal(new RoutingSpec(Enum.Parse<RouteRule>(rule), threshold, window), RoutingSpec.Parse(text));

    [Theory]
    [InlineData("gate", "unknown routing rule 'gate'")]
    [InlineData("cosine:high", "must be a number")]
    [InlineData("cosine:0.5:3", "only novelty and novelty-auto take a window")]
    public void Bad_routing_rules_are_refused_saying_why(string text, string message)
        => Assert.Contains(message, Assert.Throws<ArgumentException>(() => RoutingSpec.Parse(text)).Message);
}

public class MeanSurprisalTests
{
    [Fact]
    public void Mean_surprisal_averages_the_tokens_read_in_the_window_from_position_one_on()
    {
        // Uniform base logits over 4 tokens: every token read costs ln 4 nats, except where the logits favour it.
        using var preservation = zeros(1, 5, 4);
        preservation[0, 1, 2] = tensor(20f);   // position 1 predicts token 2 for position 2: read almost free
        using var tokens = tensor(new long[] { 0, 1, 2, 3, 0 }).unsqueeze(0);

        var all = Routing.MeanSurprisal(preservation, tokens, 8)[0].data<float>().ToArray();
        var two = Routing.MeanSurprisal(preservation, tokens, 2)[0].data<float>().ToArray();

        double ln4 = Math.Log(4);
        Assert.Equal(0, all[0], 5);                              // nothing read yet
        Assert.Equal(ln4, all[1], 5);
        Assert.Equal(ln4 / 2, all[2], 4);                        // (ln 4 + ~0) / 2
        Assert.Equal(2 * ln4 / 3, all[3], 4);
        Assert.Equal(ln4 / 2, two[3], 4);                        // tokens 2 and 3 only
        Assert.Equal(ln4, two[4], 5);                            // tokens 3 and 4
    }

    [Fact]
    public void An_uncalibrated_novelty_auto_rule_refuses_to_route()
    {
        using var logits = zeros(1, 3, 4);
        using var tokens = zeros(1, 3, dtype: ScalarType.Int64);
        var rule = RoutingSpec.Parse("novelty-auto:0.99:16");

        Assert.True(rule.NeedsCalibration);
        Assert.Contains("not calibrated", Assert.Throws<InvalidOperationException>(() => Routing.ChooseAdaptation(rule, logits, logits, tokens)).Message);
        Assert.Equal("novelty-auto:0.99:16", rule.ToString());
        Assert.Equal(RoutingSpec.DefaultAutoWindow, RoutingSpec.Parse("novelty-auto:0.95").Window);
    }
}
