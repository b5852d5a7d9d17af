using Scale.Model;
using Scale.Model.Training;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using TorchSharp;
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
        // Route's default rule is calibrated on an experiment's old data; any threshold serves here, where both heads agree.
        if (upscaled is ScaleDecoder { Routing: { NeedsCalibration: true } rule } route) route.Routing = rule with { Calibrated = 5.0 };
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
    public void Upscaling_a_tied_base_keeps_the_tie_frozen_and_gives_E_u_and_H_u_tensors_of_their_own()
    {
        // Llama 3.2's layout: tied embeddings, GQA, llama3 rope scaling.
        var config = Tiny.Gqa with { TieWordEmbeddings = true, RopeTheta = 500000, RopeScaling = new RopeScaling { Factor = 32, OriginalMaxPositionEmbeddings = 64 } };
        using var baseModel = Decoder.Create(config, seed: 2);
        var before = Tiny.Snapshot(baseModel);
        var tokens = Tiny.Tokens(config, batch: 2, length: 9, seed: 5);
        using var expected = baseModel.forward(tokens);
        var model = (ScaleDecoder)MethodSpec.Preset("adapt", headsUp: 2).Build(baseModel, seed: 4);
        Assert.True(Tiny.MaxAbsDiff(expected, model.forward(tokens)) <= 1e-5);
        var embedding = baseModel.Embedding.Weight;
        var trainable = model.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter);
        var (eu, hu) = (trainable["embed_tokens.weight_u"], trainable["lm_head.weight_u"]);
        Assert.NotEqual(eu.Handle, hu.Handle);
        Assert.DoesNotContain(trainable.Values, p => p.Handle == embedding.Handle);
        var (euBefore, huBefore) = (eu.detach().clone(), hu.detach().clone());
        using var session = new TrainingSession(model, new TrainingOptions { LearningRate = 1e-2, WarmupSteps = 0, TotalSteps = 5 });

        for (int step = 0; step < 5; step++) session.TrainStep([Tiny.Tokens(config, batch: 4, length: 9, seed: 200 + step)]);

        foreach (var (name, tensor) in baseModel.DistinctParameters())
            Assert.True(Tiny.BitEqual(before[name], tensor), $"base tensor {name} changed");
        Assert.False(Tiny.BitEqual(euBefore, eu), "E_u did not train");
        Assert.False(Tiny.BitEqual(huBefore, hu), "H_u did not train");
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
    [InlineData(false, null)]
    [InlineData(true, null)]
    [InlineData(false, 1)]
    public void Route_always_preserving_is_the_base_bit_for_bit_and_always_adapting_is_Adapt(bool gqa, int? firstW12Layer)
    {
        var config = gqa ? Tiny.Gqa : Tiny.Mha;
        using var baseModel = Decoder.Create(config, seed: 2);
        var expansion = ExpansionSpec.Adapt(headsUp: 2, firstLayer: firstW12Layer);
        var adapt = (ScaleDecoder)new MethodSpec { Kind = MethodKind.Adapt, Expansion = expansion }.Build(baseModel, seed: 4);
        Tiny.Randomise(adapt, baseModel, seed: 8);
        var tokens = Tiny.Tokens(config, batch: 2, length: 8);
        using var baseLogits = baseModel.forward(tokens);
        using var adaptLogits = adapt.forward(tokens);

        adapt.Routing = new RoutingSpec(RouteRule.Cosine, -2);   // cosine ≥ −2 everywhere: always the preservation head
        using var preserved = adapt.forward(tokens);
        adapt.Routing = new RoutingSpec(RouteRule.Cosine, 2);    // never ≥ 2: always the adaptation head
        using var adapted = adapt.forward(tokens);
        adapt.Routing = null;

        Assert.True(Tiny.MaxAbsDiff(adaptLogits, baseLogits) > 1e-3, "the randomised expansion must change the logits");
        Assert.True(Tiny.BitEqual(baseLogits, preserved), "always preserving must give the base's logits bit for bit");
        Assert.True(Tiny.BitEqual(adaptLogits, adapted), "always adapting must give Adapt's logits bit for bit");
    }

    [Theory]
    [InlineData(null, 2, 2)]   // W12 in every layer: the base's blocks carry the original stream from the embedding
    [InlineData(1, 2, 1)]      // W12 from layer 1: layer 0 is computed once for both heads
    public void Both_heads_come_from_one_pass_sharing_the_layers_below_the_first_W12(int? firstW12Layer, int upscaledCalls, int baseCalls)
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var route = (ScaleDecoder)new MethodSpec { Kind = MethodKind.Route, Expansion = ExpansionSpec.Route(firstLayer: firstW12Layer, routing: new RoutingSpec(RouteRule.Cosine, 0.5)) }.Build(baseModel, seed: 4);
        var tokens = Tiny.Tokens(Tiny.Mha, batch: 2, length: 8);

        using var routed = route.forward(tokens);

        Assert.Equal(2, Tiny.Mha.NumLayers);
        Assert.Equal(firstW12Layer ?? 0, route.FirstAdaptedLayer);
        Assert.Equal(upscaledCalls, route.UpscaledBlockCalls);   // each upscaled block once
        Assert.Equal(baseCalls, route.BaseBlockCalls);           // the base's blocks only above the first W12
    }

    [Fact]
    public void Route_trains_on_the_adaptation_head_exactly_as_Adapt_does()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var route = MethodSpec.Preset("route").Build(baseModel, seed: 4);
        var adapt = MethodSpec.Preset("adapt").Build(baseModel, seed: 4);
        var tokens = Tiny.Tokens(Tiny.Mha);

        var (routeLogits, routeAuxiliary) = route.ForwardForTraining(tokens);
        var (adaptLogits, _) = adapt.ForwardForTraining(tokens);

        Assert.Null(routeAuxiliary);
        Assert.True(Tiny.BitEqual(adaptLogits, routeLogits));
        Assert.Equal(adapt.TrainableParameterCount(), route.TrainableParameterCount());
    }

    [Fact]
    public void A_routed_model_generates_without_a_cache_as_its_routed_logits_say()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var route = (ScaleDecoder)MethodSpec.Preset("route").Build(baseModel, seed: 4);
        route.Routing = new RoutingSpec(RouteRule.Cosine, -2);    // always the preservation head: generates as the base

        var routed = Generation.Greedy(route, [1, 2, 3], 6);
        var plain = Generation.Greedy(baseModel, [1, 2, 3], 6);

        Assert.False(route.SupportsCache);
        Assert.Equal(plain, routed);
    }

    [Fact]
    public void Svd_initialisation_reads_the_base_weights_leading_singular_directions_and_keeps_preservation()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var preserve = (ScaleDecoder)MethodSpec.Preset("preserve", headsUp: 1).Build(baseModel, seed: 4);
        var weights = preserve.DistinctParameters().ToDictionary(p => p.Name, p => (Tensor)p.Parameter);
        var w = weights["layers.0.self_attn.q_proj.weight"];
        var (_, sigma, vh) = torch.linalg.svd(w, fullMatrices: false);
        var w21 = weights["layers.0.self_attn.q_proj.w21"];
        var w22 = weights["layers.0.self_attn.q_proj.w22"];
        long du = w21.shape[0];
        double scale = 0.02 * Math.Sqrt(w.shape[1]);

        // Each row of W21 is ± a right singular vector of W (the sign of an SVD is free), scaled to InitScale·√in.
        for (int i = 0; i < du; i++)
        {
            double dot = (w21[i] * vh[i]).sum().item<float>();
            Assert.Equal(scale, Math.Abs(dot), 4);
        }
        Assert.Equal(0.02 * Math.Sqrt(w22.shape[1]), w22[0, 0].item<float>(), 5);                   // σ₁/σ₁ on the diagonal
        Assert.Equal(0.02 * Math.Sqrt(w22.shape[1]) * (sigma[1] / sigma[0]).item<float>(), w22[1, 1].item<float>(), 5);
        Assert.Equal(0, w22[0, 1].item<float>());
        var tokens = Tiny.Tokens(Tiny.Mha);
        foreach (var (mine, theirs) in preserve.OriginalStreamStates(tokens).Zip(baseModel.HiddenStates(tokens)))
            Assert.True(Tiny.BitEqual(theirs, mine), "SVD-initialised Preserve keeps the original stream bit for bit");
        var normal = (ScaleDecoder)new MethodSpec { Kind = MethodKind.Preserve, Expansion = ExpansionSpec.Preserve() with { Init = ExpansionInit.Normal } }.Build(baseModel, seed: 4);
        var normalW21 = normal.DistinctParameters().First(p => p.Name == "layers.0.self_attn.q_proj.w21").Parameter;
        Assert.False(Tiny.BitEqual(w21, normalW21));
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

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void Preserved_layers_leave_W12_out_of_the_bottom_L_fp_layers_by_closed_form(int preservedLayers)
    {
        var config = Tiny.Mha with { NumLayers = 3 };
        using var baseModel = Decoder.Create(config);
        var experiment = new Scale.Model.Experiments.ExperimentSpec { Model = config, VocabSize = config.VocabSize };
        var plan = Scale.Model.Experiments.TrialPlanner.Plan(experiment, "adapt",
            new Dictionary<string, string> { ["preserved_layers"] = preservedLayers.ToString(), ["heads_up"] = "2", ["ffn_up"] = "6" });

        var model = (ScaleDecoder)plan.Method.Build(baseModel);

        long d = config.HiddenSize, hs = config.HeadDim, h = config.NumHeads, kv = config.NumKvHeads, f = config.IntermediateSize, du = 2 * hs, fu = 6;
        long w12PerLayer = h * hs * du + 2 * kv * hs * du + d * du + 2 * f * du + d * fu;
        Assert.Equal(ClosedForm(config, "preserve", 2, 6) + (config.NumLayers - preservedLayers) * w12PerLayer, model.TrainableParameterCount());
        Assert.Equal(preservedLayers, model.FirstAdaptedLayer);
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
            perLayer += h * hs * du + 2 * kv * hs * du + d * du + 2 * f * du + d * fu;   // W12 of q, k, v, o, gate, up, down (Route trains Adapt's blocks)
        return c.NumLayers * perLayer + global;
    }
}
