using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using TorchSharp;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

/// <summary>Tiny configurations and helpers for numeric tests.</summary>
internal static class Tiny
{
    /// <summary>Width 8, two layers, two heads of size 4.</summary>
    public static readonly ModelConfig Mha = new()
    {
        VocabSize = 32, HiddenSize = 8, NumLayers = 2, NumHeads = 2, IntermediateSize = 16,
    };

    /// <summary>Grouped-query attention: four query heads sharing two key/value heads.</summary>
    public static readonly ModelConfig Gqa = new()
    {
        VocabSize = 32, HiddenSize = 16, NumLayers = 2, NumHeads = 4, NumKvHeadsOrNull = 2, IntermediateSize = 24,
    };

    public static Tensor Tokens(ModelConfig config, int batch = 2, int length = 7, long seed = 1)
        => randint(0, config.VocabSize, [batch, length], generator: new Generator((ulong)seed));

    public static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    public static bool BitEqual(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    /// <summary>Fills every tensor of the model that is not the base's with random values (so that W12 and H_u matter).</summary>
    public static void Randomise(CausalLM model, Decoder baseModel, long seed = 7)
    {
        var baseHandles = baseModel.parameters().Select(p => p.Handle).ToHashSet();
        var g = new Generator((ulong)seed);
        using var noGrad = no_grad();
        foreach (var (_, p) in model.DistinctParameters())
            if (!baseHandles.Contains(p.Handle)) p.copy_(randn(p.shape, generator: g) * 0.3);
    }

    public static IReadOnlyDictionary<string, Tensor> Snapshot(CausalLM model)
        => model.DistinctParameters().ToDictionary(p => p.Name, p => p.Parameter.detach().clone());
}
