using Scale.Model;
using Scale.Model.Baselines;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

public class BaselineTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Depth_expansion_at_initialisation_computes_the_base_logits(int every)
    {
        using var baseModel = Decoder.Create(Tiny.Gqa, seed: 2);
        var tokens = Tiny.Tokens(Tiny.Gqa);
        using var expected = baseModel.forward(tokens);

        var expanded = DepthExpansion.Expand(baseModel, every);
        using var actual = expanded.forward(tokens);

        Assert.Equal(Tiny.Gqa.NumLayers + Tiny.Gqa.NumLayers / every, expanded.Config.NumLayers);
        Assert.True(Tiny.MaxAbsDiff(expected, actual) <= 1e-5);
    }

    [Fact]
    public void Depth_expansion_trains_only_the_inserted_copies()
    {
        var config = Tiny.Mha with { NumLayers = 4 };
        using var baseModel = Decoder.Create(config);

        var expanded = DepthExpansion.Expand(baseModel, every: 2);

        var inserted = DepthExpansion.InsertedLayers(4, 2);
        Assert.Equal([2, 5], inserted);
        var trainableLayers = expanded.TrainableParameters().Select(p => int.Parse(p.Name.Split('.')[1])).Distinct().Order();
        Assert.Equal(inserted, trainableLayers);
        long perBlock = baseModel.Blocks[0].parameters().Sum(p => p.numel());
        Assert.Equal(2 * perBlock, expanded.TrainableParameterCount());
    }

    [Fact]
    public void Depth_expansion_rejects_a_period_outside_the_layers()
    {
        using var baseModel = Decoder.Create(Tiny.Mha);
        Assert.Contains("every", Assert.Throws<ArgumentException>(() => DepthExpansion.Expand(baseModel, 0)).Message);
    }

    [Fact]
    public void LoRA_at_initialisation_computes_the_base_logits_and_trains_only_adapters()
    {
        using var baseModel = Decoder.Create(Tiny.Gqa, seed: 2);
        var tokens = Tiny.Tokens(Tiny.Gqa);
        using var expected = baseModel.forward(tokens);
        var spec = new LoraSpec { Rank = 2, Alpha = 4, TargetModules = ["q_proj", "v_proj", "down_proj"] };

        var model = Lora.Apply(baseModel, spec);
        using var actual = model.forward(tokens);

        Assert.True(Tiny.MaxAbsDiff(expected, actual) <= 1e-6);
        var c = Tiny.Gqa;
        long perLayer = 2 * (c.HiddenSize + c.QueryWidth) + 2 * (c.HiddenSize + c.KvWidth) + 2 * (c.IntermediateSize + c.HiddenSize);
        Assert.Equal(c.NumLayers * perLayer, model.TrainableParameterCount());
        Assert.All(model.TrainableParameters(), p => Assert.Contains(".lora_", p.Name));
    }

    [Fact]
    public void LoRA_merge_gives_W_plus_alpha_over_r_times_BA_and_merge_and_unmerge_are_idempotent()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var spec = new LoraSpec { Rank = 2, Alpha = 6 };
        var model = Lora.Apply(baseModel, spec);
        Tiny.Randomise(model, baseModel);
        var tokens = Tiny.Tokens(Tiny.Mha);
        using var unmerged = model.forward(tokens);
        var adapter = Lora.Adapters(model).First();
        var parameters = adapter.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var expected = parameters["weight"] + (spec.Alpha / spec.Rank) * matmul(parameters["lora_B"], parameters["lora_A"]);
        var weightBefore = parameters["weight"].detach().clone();

        Lora.Merge(model);
        Lora.Merge(model);
        using var merged = model.forward(tokens);
        Lora.Unmerge(model);
        Lora.Unmerge(model);
        using var unmergedAgain = model.forward(tokens);

        Assert.True(Tiny.MaxAbsDiff(adapter.MergedWeight(), expected) <= 1e-6);
        Assert.True(Tiny.MaxAbsDiff(merged, unmerged) <= 1e-4, $"merged vs unmerged {Tiny.MaxAbsDiff(merged, unmerged)}");
        Assert.True(Tiny.BitEqual(unmerged, unmergedAgain));
        Assert.True(Tiny.BitEqual(weightBefore, parameters["weight"]), "merging must not modify the shared base weight");
        Assert.False(adapter.IsMerged);
    }

    [Fact]
    public void Full_fine_tuning_trains_a_private_copy_and_leaves_the_base_alone()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var before = Tiny.Snapshot(baseModel);

        var model = MethodSpec.Preset("full").Build(baseModel);
        using (var session = new Scale.Model.Training.TrainingSession(model, new() { LearningRate = 1e-2, WarmupSteps = 0, TotalSteps = 3 }))
        {
            for (int i = 0; i < 3; i++) session.TrainStep([Tiny.Tokens(Tiny.Mha, batch: 2, length: 6, seed: i)]);
        }

        Assert.Equal(baseModel.ParameterCount(), model.TrainableParameterCount());
        foreach (var (name, tensor) in baseModel.DistinctParameters()) Assert.True(Tiny.BitEqual(before[name], tensor), name);
        Assert.Contains(model.DistinctParameters(), p => !Tiny.BitEqual(before[p.Name], p.Parameter));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Freeze_trains_a_private_copy_above_the_frozen_embeddings_and_bottom_layers(bool gqa)
    {
        var config = (gqa ? Tiny.Gqa : Tiny.Mha) with { NumLayers = 3 };
        using var baseModel = Decoder.Create(config, seed: 2);
        var before = Tiny.Snapshot(baseModel);

        var model = new MethodSpec { Kind = MethodKind.Freeze, FreezeLayers = 3 }.Build(baseModel);   // capped at L − 1 = 2
        long layer = baseModel.DistinctParameters().Where(p => p.Name.StartsWith("layers.2.", StringComparison.Ordinal)).Sum(p => p.Parameter.numel());
        long head = config.VocabSize * config.HiddenSize, norm = config.HiddenSize;
        using (var session = new Scale.Model.Training.TrainingSession(model, new() { LearningRate = 1e-2, WarmupSteps = 0, TotalSteps = 2 }))
        {
            for (int i = 0; i < 2; i++) session.TrainStep([Tiny.Tokens(config, batch: 2, length: 6, seed: i)]);
        }

        Assert.Equal(layer + norm + head, model.TrainableParameterCount());   // block 2, the final norm and the (untied) head
        Assert.All(model.TrainableParameters(), p => Assert.DoesNotMatch(@"^(embed_tokens|layers\.[01])\.", p.Name));
        foreach (var (name, tensor) in baseModel.DistinctParameters()) Assert.True(Tiny.BitEqual(before[name], tensor), name);
        var trained = model.DistinctParameters().ToDictionary(p => p.Name, p => p.Parameter);
        Assert.True(Tiny.BitEqual(before["layers.0.mlp.up_proj.weight"], trained["layers.0.mlp.up_proj.weight"]));
        Assert.False(Tiny.BitEqual(before["layers.2.mlp.up_proj.weight"], trained["layers.2.mlp.up_proj.weight"]));
    }

    [Fact]
    public void Unknown_method_names_list_the_known_ones()
    {
        var error = Assert.Throws<ArgumentException>(() => MethodSpec.Preset("scale-magic"));
        Assert.Contains("preserve", error.Message);
    }
}

public class TrialModelTests
{
    [Theory]
    [InlineData("preserve")]
    [InlineData("route")]
    [InlineData("depth")]
    [InlineData("lora")]
    [InlineData("full")]
    public void Releasing_a_variant_frees_its_own_tensors_and_leaves_the_shared_base_usable(string method)
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var tokens = Tiny.Tokens(Tiny.Mha);
        using var before = baseModel.forward(tokens);
        var model = MethodSpec.Preset(method).Build(baseModel);
        var own = model.DistinctParameters().Where(p => !baseModel.parameters().Any(b => b.Handle == p.Parameter.Handle)).ToList();

        TrialModels.ReleaseOwnTensors(model, baseModel);

        Assert.NotEmpty(own);
        Assert.All(own, p => Assert.True(p.Parameter.IsInvalid, p.Name));
        Assert.True(Tiny.BitEqual(before, baseModel.forward(tokens)));
    }
}
