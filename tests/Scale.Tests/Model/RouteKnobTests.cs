using Scale.Model;
using Scale.Model.Training;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

/// <summary>Route's design space: what routers read, where gates sit, soft or straight-through hard gates.</summary>
public class RouteKnobTests
{
    private static ScaleDecoder Route(Decoder baseModel, RouterSpec router, int seed = 4)
        => (ScaleDecoder)new MethodSpec { Kind = MethodKind.Route, Expansion = ExpansionSpec.Route(headsUp: 1, router: router) }.Build(baseModel, seed);

    public static TheoryData<RouterInput, GatePlacement, bool> Knobs()
    {
        var data = new TheoryData<RouterInput, GatePlacement, bool>();
        foreach (var input in Enum.GetValues<RouterInput>())
            foreach (var gates in Enum.GetValues<GatePlacement>())
                foreach (var hard in new[] { false, true })
                    data.Add(input, gates, hard);
        return data;
    }

    [Theory]
    [MemberData(nameof(Knobs))]
    public void Every_route_variant_computes_the_base_logits_at_initialisation(RouterInput input, GatePlacement gates, bool hard)
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var tokens = Tiny.Tokens(Tiny.Mha, batch: 3, length: 9);
        using var expected = baseModel.forward(tokens);

        var route = Route(baseModel, new RouterSpec { Input = input, Gates = gates, Hard = hard });
        using var actual = route.forward(tokens);

        Assert.True(Tiny.MaxAbsDiff(expected, actual) <= 1e-5, $"max abs diff {Tiny.MaxAbsDiff(expected, actual)}");
        int routers = gates switch { GatePlacement.Blocks => Tiny.Mha.NumLayers, GatePlacement.Head => 1, _ => Tiny.Mha.NumLayers + 1 };
        Assert.Equal(routers, route.GateValues(tokens).Count);
        long perRouter = 1 + (input is RouterInput.Hidden or RouterInput.Both ? Tiny.Mha.HiddenSize : 0) + (input is RouterInput.Confidence or RouterInput.Both ? 2 : 0);
        long expansionOnly = Route(baseModel, new RouterSpec { Gates = GatePlacement.Both, Input = RouterInput.Hidden }).TrainableParameterCount() - (Tiny.Mha.NumLayers + 1) * (1L + Tiny.Mha.HiddenSize);
        Assert.Equal(expansionOnly + routers * perRouter, route.TrainableParameterCount());
    }

    [Fact]
    public void Hard_gates_are_zero_or_one_forward_and_still_pass_a_gradient_to_the_router()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var route = Route(baseModel, new RouterSpec { Hard = true, Penalty = 0.1, Input = RouterInput.Hidden, InitBias = 0 });
        Tiny.Randomise(route, baseModel, seed: 8);
        var tokens = Tiny.Tokens(Tiny.Mha, batch: 2, length: 8);

        var values = route.GateValues(tokens);
        var (logits, penalty) = route.ForwardForTraining(tokens);
        (logits.square().mean() + penalty!).backward();

        Assert.All(values, g => Assert.True(g.eq(0).logical_or(g.eq(1)).all().item<bool>()));
        Assert.Contains(values, g => g.sum().item<float>() > 0 && g.sum().item<float>() < g.numel());   // routing, not a constant
        var routerGrads = route.TrainableParameters().Where(p => p.Name.Contains("router")).Select(p => p.Parameter.grad).ToList();
        Assert.Contains(routerGrads, g => g is not null && g.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void Confidence_routers_read_the_frozen_base_prediction_and_train()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var route = Route(baseModel, new RouterSpec { Input = RouterInput.Confidence });
        var tokens = Tiny.Tokens(Tiny.Mha, batch: 2, length: 8);
        using var session = new TrainingSession(route, new TrainingOptions { LearningRate = 1e-2, WarmupSteps = 0, TotalSteps = 5 });
        var before = route.TrainableParameters().Where(p => p.Name.Contains("confidence_weight")).Select(p => p.Parameter.detach().clone()).ToList();

        for (int i = 0; i < 3; i++) session.TrainStep([Tiny.Tokens(Tiny.Mha, batch: 2, length: 9, seed: i)]);

        var after = route.TrainableParameters().Where(p => p.Name.Contains("confidence_weight")).Select(p => p.Parameter).ToList();
        Assert.Equal(Tiny.Mha.NumLayers + 1, after.Count);
        Assert.Contains(after.Zip(before), pair => Tiny.MaxAbsDiff(pair.Item1, pair.Item2) > 0);
        var gates = route.GateValues(tokens);
        Assert.All(gates, g => Assert.True(g.min().item<float>() >= 0 && g.max().item<float>() <= 1));
    }
}
