using Scale.Model;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

/// <summary>Every routed method, SCALE or a routed control: the two heads, and the rules' causality.</summary>
public class RoutedControlTests
{
    private static readonly RoutingSpec AlwaysPreservation = new(RouteRule.Cosine, -2);   // cosine ≥ −1 > −2: never below τ
    private static readonly RoutingSpec AlwaysAdaptation = new(RouteRule.Cosine, 2);      // cosine ≤ 1 < 2: always below τ

    /// <summary>A trained-looking model of <paramref name="method"/>: its own tensors random, so that it differs from the base.</summary>
    private static CausalLM Trained(Decoder baseModel, string method)
    {
        var model = MethodSpec.Preset(method).Build(baseModel, seed: 4);
        Tiny.Randomise(model, baseModel);
        if (method is "full" or "freeze")
        {
            using var noGrad = no_grad();
            foreach (var p in model.parameters().Where(p => p.requires_grad)) p.add_(randn(p.shape) * 0.05);
        }
        return model;
    }

    [Theory]
    [InlineData("full")]
    [InlineData("freeze")]
    [InlineData("lora")]
    [InlineData("depth")]
    [InlineData("preserve")]
    [InlineData("adapt")]
    public void Always_the_preservation_head_is_the_base_bit_for_bit_and_always_the_adaptation_head_is_the_method_itself(string method)
    {
        using var baseModel = Decoder.Create(Tiny.Mha with { NumLayers = 4 }, seed: 3).Freeze();
        using var tokens = Tiny.Tokens(Tiny.Mha, batch: 2, length: 9);
        using var noGrad = no_grad();
        var trained = Trained(baseModel, method);
        using var own = trained.forward(tokens);
        using var baseLogits = baseModel.forward(tokens);

        using var preserved = MethodSpec.Route(trained, baseModel, AlwaysPreservation).forward(tokens);
        using var adapted = MethodSpec.Route(trained, baseModel, AlwaysAdaptation).forward(tokens);

        Assert.True(Tiny.BitEqual(baseLogits, preserved));
        Assert.True(Tiny.BitEqual(own, adapted));
        Assert.False(Tiny.BitEqual(own, baseLogits));   // the method did change the answers
        TrialModels.ReleaseOwnTensors(trained, baseModel);
    }

    [Theory]
    [InlineData("cosine:0.5")]
    [InlineData("cosine-prob:0.5")]
    [InlineData("confidence:0.2")]
    [InlineData("novelty:3")]
    [InlineData("novelty:3:4")]
    [InlineData("novelty-auto:0.5:4")]
    public void Every_rule_is_causal_later_tokens_never_change_an_earlier_tokens_choice(string rule)
    {
        var config = Tiny.Mha with { VocabSize = 64 };
        using var baseModel = Decoder.Create(config, seed: 5).Freeze();
        var spec = RoutingSpec.Parse(rule);
        if (spec.NeedsCalibration) spec = spec with { Calibrated = 4.0 };
        var scale = ScaleDecoder.Upscale(baseModel, ExpansionSpec.Adapt(), seed: 6);
        Tiny.Randomise(scale, baseModel);
        var lora = Trained(baseModel, "lora");
        using var noGrad = no_grad();
        foreach (var model in new CausalLM[] { scale, lora })
        {
            var routed = MethodSpec.Route(model, baseModel, spec);
            using var tokens = Tiny.Tokens(config, batch: 3, length: 16, seed: 11);
            using var changed = tokens.clone();
            changed.narrow(1, 10, 6).copy_(Tiny.Tokens(config, batch: 3, length: 6, seed: 12));   // tokens 10 … 15 differ
            var (p1, a1) = routed is ScaleDecoder s1 ? s1.Heads(tokens) : ((RoutedModel)routed).Heads(tokens);
            var (p2, a2) = routed is ScaleDecoder s2 ? s2.Heads(changed) : ((RoutedModel)routed).Heads(changed);
            using var first = Routing.ChooseAdaptation(spec, p1, a1, tokens);
            using var second = Routing.ChooseAdaptation(spec, p2, a2, changed);

            Assert.True(Tiny.BitEqual(first.narrow(1, 0, 10), second.narrow(1, 0, 10)), $"{rule} on {model.GetType().Name}");
            using var routedFirst = routed.forward(tokens);
            using var routedSecond = routed.forward(changed);
            Assert.True(Tiny.BitEqual(routedFirst.narrow(1, 0, 10), routedSecond.narrow(1, 0, 10)));
        }
        TrialModels.ReleaseOwnTensors(scale, baseModel);
        TrialModels.ReleaseOwnTensors(lora, baseModel);
    }

    [Fact]
    public void Block_passes_count_both_heads_only_above_the_first_W12()
    {
        var preserve = MethodSpec.Preset("preserve");
        var adapt = MethodSpec.Preset("adapt");
        var topOnly = TrialPlannerHelpers.Method("adapt", ("w12_last", "1"));
        var routing = new RoutingSpec(RouteRule.Cosine, 0.5);

        Assert.Equal(1, preserve.BlockPasses(4));
        Assert.Equal(1, preserve.RoutedBy(routing).BlockPasses(4));      // no W12: one pass gives both heads
        Assert.Equal(2, adapt.RoutedBy(routing).BlockPasses(4));         // W12 from block 0: the base runs beside it
        Assert.Equal(1.25, topOnly.RoutedBy(routing).BlockPasses(4));    // W12 in the top block only: one more base block
        Assert.Equal(2, MethodSpec.Preset("lora").RoutedBy(routing).BlockPasses(4));
        Assert.Equal(2.5, MethodSpec.Preset("depth").RoutedBy(routing).BlockPasses(4));   // 4 + 2 inserted blocks, and the base's 4
        Assert.Throws<ArgumentException>(() => MethodSpec.Preset("frozen").RoutedBy(routing));
    }
}

internal static class TrialPlannerHelpers
{
    public static MethodSpec Method(string method, params (string Key, string Value)[] settings)
        => Scale.Model.Experiments.TrialPlanner.Plan(new Scale.Model.Experiments.ExperimentSpec { Model = Tiny.Mha with { NumLayers = 4 } }, method,
                                                     settings.ToDictionary(s => s.Key, s => s.Value)).Method;
}

public class RouteInLossTests
{
    [Fact]
    public void Route_trained_on_its_routed_output_learns_only_from_tokens_routed_to_the_adaptation_head()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2).Freeze();
        using var tokens = Tiny.Tokens(Tiny.Mha, batch: 2, length: 9);
        CausalLM Route(RoutingSpec rule, bool inLoss)
            => new MethodSpec { Kind = MethodKind.Route, Expansion = ExpansionSpec.Route(headsUp: 2, routing: rule) with { RouteInLoss = inLoss } }.Build(baseModel, seed: 4);
        double[] GradientNorms(CausalLM model)
        {
            var (logits, _) = model.ForwardForTraining(tokens.narrow(1, 0, 8));
            Scale.Model.Transformer.Ops.LanguageModelLoss(logits, tokens.narrow(1, 1, 8)).backward();
            return model.TrainableParameters().Select(p => p.Parameter.grad is { } g ? g.norm().item<float>() : 0.0).ToArray();
        }
        var adapting = new RoutingSpec(RouteRule.Cosine, 2);      // every token to the adaptation head
        var preserving = new RoutingSpec(RouteRule.Cosine, -2);   // every token to the preservation head

        var onAdaptation = GradientNorms(Route(adapting, inLoss: false));
        var routedAdapting = GradientNorms(Route(adapting, inLoss: true));
        var routedPreserving = GradientNorms(Route(preserving, inLoss: true));

        Assert.Equal(onAdaptation, routedAdapting);           // everything routed to the adaptation head: the same gradients as training on it
        Assert.Contains(onAdaptation, n => n > 0);
        Assert.All(routedPreserving, n => Assert.Equal(0.0, n));   // everything to the base: nothing reaches the expansion
        Assert.Equal(0, Route(adapting, inLoss: true).TraceDepth);  // it computes both heads itself: no lock-step
    }
}
