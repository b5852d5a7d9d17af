using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Baselines;

/// <summary>
/// LLaMA Pro depth expansion: after every k-th block insert a copy of it whose attention-output and
/// down projections are zero, so each copy starts as the identity. Only the copies train; the base's
/// blocks, embedding, norm and head are shared and frozen.
/// </summary>
internal static class DepthExpansion
{
    public static Decoder Expand(Decoder baseModel, int every)
    {
        int layers = baseModel.Config.NumLayers;
        if (every < 1 || every > layers)
            throw new ArgumentException($"Invalid depth expansion: every must be within 1..{layers} (the base's layer count), got {every}.");
        baseModel.Freeze();
        var blocks = new List<Block>();
        foreach (var (block, i) in baseModel.Blocks.Select((b, i) => (b, i)))
        {
            blocks.Add(block);
            if ((i + 1) % every != 0) continue;
            var copy = block.DeepClone();
            using (no_grad())
            {
                foreach (var (name, parameter) in copy.named_parameters())
                    if (name is "self_attn.o_proj.weight" or "mlp.down_proj.weight") parameter.zero_();
            }
            foreach (var parameter in copy.parameters()) parameter.requires_grad = true;
            blocks.Add(copy);
        }
        return baseModel.WithBlocks(blocks, baseModel.Config with { NumLayers = blocks.Count });
    }

    /// <summary>Layer indices of the inserted copies in the expanded model.</summary>
    public static IReadOnlyList<int> InsertedLayers(int baseLayers, int every)
        => Enumerable.Range(1, baseLayers / every).Select(j => j * (every + 1) - 1).ToList();
}
