using Scale.Model;
using Scale.Model.Training;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

public class ScaleUpscalingTests
{
    public static TheoryData<string, bool> PresetsAndAttention => new()
    {
        { "preserve", false }, { "preserve", true }, { "adapt", false }, { "adapt", true }, { "route", false }, { "route", true },
    };

    [Theory]
    [MemberData(nameof(PresetsAndAttention))]
    public void Upscaled_model_at_initialisation_computes_the_base_logits(string preset, bool gqa)
    {
        var config = gqa ? Tiny.Gqa : Tiny.Mha;
        using var baseModel = Decoder.Create(config, seed: 2);
        var tokens = Tiny.Tokens(config, batch: 3, length: 9);
        using var expected = baseModel.forward(tokens);

        var upscaled = MethodSpec.Preset(preset, headsUp: 2).Build(baseModel, seed: 4);
        using var actual = upscaled.forward(tokens);

        Assert.True(Tiny.MaxAbsDiff(expected, actual) <= 1e-5, $"max abs diff {Tiny.MaxAbsDiff(expected, actual)}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Preserve_keeps_base_tensors_and_original_stream_bit_for_bit_through_training(bool gqa)
    {
        var config = gqa ? Tiny.Gqa : Tiny.Mha;
        using var baseModel = Decoder.Create(config, seed: 2);
        var before = Tiny.Snapshot(baseModel);
        var model = (ScaleDecoder)MethodSpec.Preset("preserve").Build(baseModel, seed: 4);
        var snapshotOfNew = Tiny.Snapshot(model);
        using var session = new TrainingSession(model, new TrainingOptions { LearningRate = 1e-2, WarmupSteps = 2, TotalSteps = 20 });

        for (int step = 0; step < 20; step++)
            session.TrainStep([Tiny.Tokens(config, batch: 4, length: 9, seed: 100 + step)]);

        foreach (var (name, tensor) in baseModel.DistinctParameters())
            Assert.True(Tiny.BitEqual(before[name], tensor), $"base tensor {name} changed");
        Assert.Contains(model.TrainableParameters(), p => !Tiny.BitEqual(snapshotOfNew[p.Name], p.Parameter));
        var tokens = Tiny.Tokens(config, batch: 3, length: 9, seed: 99);
        var baseStates = baseModel.HiddenStates(tokens);
        var originalStream = model.OriginalStreamStates(tokens);
        Assert.Equal(config.NumLayers + 1, originalStream.Count);
        for (int layer = 0; layer < baseStates.Count; layer++)
            Assert.True(Tiny.BitEqual(baseStates[layer], originalStream[layer]), $"original stream differs after layer {layer}");
    }

    [Fact]
    public void Preserve_computes_the_original_stream_without_autograd_while_Adapt_needs_it()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var preserve = (ScaleDecoder)MethodSpec.Preset("preserve").Build(baseModel);
        var adapt = (ScaleDecoder)MethodSpec.Preset("adapt").Build(baseModel);
        var tokens = Tiny.Tokens(Tiny.Mha);

        Assert.All(preserve.OriginalStreamStates(tokens), state => Assert.False(state.requires_grad));
        Assert.True(adapt.OriginalStreamStates(tokens)[^1].requires_grad);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Route_with_gates_forced_to_zero_is_the_base_and_forced_to_one_is_Adapt(bool gqa)
    {
        var config = gqa ? Tiny.Gqa : Tiny.Mha;
        using var baseModel = Decoder.Create(config, seed: 2);
        var route = (ScaleDecoder)MethodSpec.Preset("route", headsUp: 2).Build(baseModel, seed: 4);
        var adapt = (ScaleDecoder)MethodSpec.Preset("adapt", headsUp: 2).Build(baseModel, seed: 4);
        Tiny.Randomise(route, baseModel, seed: 8);
        var routeTensors = route.DistinctParameters().ToDictionary(p => p.Name, p => p.Parameter);
        using (no_grad())
        {
            foreach (var (name, p) in adapt.DistinctParameters()) p.copy_(routeTensors[name]);   // adapt = route minus its routers
        }
        var tokens = Tiny.Tokens(config, batch: 2, length: 8);
        using var baseLogits = baseModel.forward(tokens);
        using var adaptLogits = adapt.forward(tokens);

        route.ForcedGate = 0;
        using var closed = route.forward(tokens);
        route.ForcedGate = 1;
        using var open = route.forward(tokens);
        route.ForcedGate = null;
        using var routed = route.forward(tokens);

        Assert.True(Tiny.MaxAbsDiff(adaptLogits, baseLogits) > 1e-3, "the randomised expansion must change the logits");
        Assert.True(Tiny.MaxAbsDiff(closed, baseLogits) <= 1e-5, $"gate 0 vs base: {Tiny.MaxAbsDiff(closed, baseLogits)}");
        Assert.True(Tiny.MaxAbsDiff(open, adaptLogits) <= 1e-5, $"gate 1 vs adapt: {Tiny.MaxAbsDiff(open, adaptLogits)}");
        Assert.True(Tiny.MaxAbsDiff(routed, baseLogits) > 1e-4 && Tiny.MaxAbsDiff(routed, adaptLogits) > 1e-4);
    }

    [Fact]
    public void Route_adds_its_gate_penalty_to_the_training_loss()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var spec = new MethodSpec
        {
            Kind = MethodKind.Route,
            Expansion = ExpansionSpec.Route(router: new RouterSpec { Penalty = 0.5, InitBias = 0 }),
        };
        var route = (ScaleDecoder)spec.Build(baseModel);
        var tokens = Tiny.Tokens(Tiny.Mha);

        var (_, penalty) = route.ForwardForTraining(tokens);
        var gates = route.MeanGates(tokens);

        Assert.NotNull(penalty);
        Assert.Equal(Tiny.Mha.NumLayers + 1, gates.Count);
        Assert.Equal(0.5 * gates.Average(), penalty!.item<float>(), 5);
    }

    [Theory]
    [MemberData(nameof(PresetsAndAttention))]
    public void Trainable_parameter_count_equals_the_closed_form(string preset, bool gqa)
    {
        var config = gqa ? Tiny.Gqa : Tiny.Mha;
        using var baseModel = Decoder.Create(config);
        const int headsUp = 2, ffnUp = 6;

        var model = MethodSpec.Preset(preset, headsUp, ffnUp).Build(baseModel);

        Assert.Equal(ClosedForm(config, preset, headsUp, ffnUp), model.TrainableParameterCount());
        Assert.Equal(baseModel.ParameterCount() + model.TrainableParameterCount(), model.ParameterCount());
    }

    [Fact]
    public void Adapt_on_a_subset_trains_W12_only_in_the_chosen_layers_and_modules()
    {
        var config = Tiny.Mha with { NumLayers = 3 };
        using var baseModel = Decoder.Create(config);
        var spec = ExpansionSpec.Adapt(modules: ["q_proj", "down_proj"], firstLayer: 2);

        var model = ScaleDecoder.Upscale(baseModel, spec);

        var w12 = model.TrainableParameters().Select(p => p.Name).Where(n => n.EndsWith(".w12")).Order().ToList();
        Assert.Equal(["layers.2.mlp.down_proj.w12", "layers.2.self_attn.q_proj.w12"], w12);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void SCALE_rejects_fewer_than_one_new_head(int headsUp)
    {
        using var baseModel = Decoder.Create(Tiny.Mha);
        var error = Assert.Throws<ArgumentException>(() => ScaleDecoder.Upscale(baseModel, ExpansionSpec.Preserve(headsUp)));
        Assert.Contains("h_u", error.Message);
    }

    [Fact]
    public void An_expansion_naming_an_unknown_module_or_layer_is_rejected()
    {
        using var baseModel = Decoder.Create(Tiny.Mha);
        Assert.Contains("'qproj'", Assert.Throws<ArgumentException>(
            () => ScaleDecoder.Upscale(baseModel, ExpansionSpec.Adapt(modules: ["qproj"]))).Message);
        Assert.Contains("outside", Assert.Throws<ArgumentException>(
            () => ScaleDecoder.Upscale(baseModel, ExpansionSpec.Adapt(firstLayer: 5))).Message);
    }

    [Fact]
    public void Many_upscaled_models_share_one_copy_of_the_base()
    {
        using var baseModel = Decoder.Create(Tiny.Mha);
        var a = MethodSpec.Preset("preserve").Build(baseModel, seed: 1);
        var b = MethodSpec.Preset("adapt").Build(baseModel, seed: 2);

        var baseHandles = baseModel.parameters().Select(p => p.Handle).ToHashSet();
        var frozenA = a.DistinctParameters().Where(p => !p.Parameter.requires_grad).Select(p => p.Parameter.Handle).ToHashSet();
        var frozenB = b.DistinctParameters().Where(p => !p.Parameter.requires_grad).Select(p => p.Parameter.Handle).ToHashSet();
        Assert.Superset(baseHandles, frozenA);
        Assert.Superset(baseHandles, frozenB);
        Assert.Equal(baseHandles.Count, frozenA.Count);
    }

    /// <summary>The trainable tensor sizes of each preset, written out from docs/method.md.</summary>
    private static long ClosedForm(ModelConfig c, string preset, int headsUp, int ffnUp)
    {
        long d = c.HiddenSize, hs = c.HeadDim, h = c.NumHeads, kv = c.NumKvHeads, f = c.IntermediateSize, v = c.VocabSize;
        long du = headsUp * hs, fu = ffnUp;
        long perLayer =
            3 * (du * d + du * du)          // q, k, v: W21, W22 (each new head has its own key/value head)
            + (du * h * hs + du * du)       // o: W21 (reads the base heads' output), W22
            + 2 * (fu * d + fu * du)        // gate, up
            + (du * f + du * fu)            // down
            + 2 * du;                       // new norm gains
        long global = v * du + v * du + du; // E_u, H_u, final new norm gain
        if (preset is "adapt" or "route")
            perLayer += h * hs * du + 2 * kv * hs * du + d * du + 2 * f * du + d * fu;   // W12 of q, k, v, o, gate, up, down
        if (preset == "route")
        {
            long router = 2 + 1;             // Route's default router reads the base's confidence (entropy, top probability), plus a bias
            perLayer += router;              // a router per block
            global += router;                // and one for the head
        }
        return c.NumLayers * perLayer + global;
    }
}
