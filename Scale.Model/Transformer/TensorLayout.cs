using static TorchSharp.torch;

namespace Scale.Model.Transformer;

internal enum TensorRole { Weight, Bias, Gain }

/// <summary>One tensor of a base decoder: its checkpoint name, shape and role.</summary>
internal sealed record TensorSpec(string Name, long[] Shape, TensorRole Role);

/// <summary>A checkpoint that does not match what it claims to hold; the message lists every problem found.</summary>
internal sealed class InvalidCheckpointException(string message) : Exception(message);

/// <summary>The tensors a base decoder of a given configuration holds: the table that import, export and checks share.</summary>
internal static class TensorLayout
{
    public static IReadOnlyList<TensorSpec> Of(ModelConfig config)
    {
        long d = config.HiddenSize, q = config.QueryWidth, kv = config.KvWidth, f = config.IntermediateSize, v = config.VocabSize;
        var specs = new List<TensorSpec> { new("embed_tokens.weight", [v, d], TensorRole.Weight) };
        for (int i = 0; i < config.NumLayers; i++)
        {
            var at = $"layers.{i}";
            specs.Add(new($"{at}.input_layernorm.weight", [d], TensorRole.Gain));
            foreach (var (name, outputs) in new[] { ("q_proj", q), ("k_proj", kv), ("v_proj", kv) })
            {
                specs.Add(new($"{at}.self_attn.{name}.weight", [outputs, d], TensorRole.Weight));
                if (config.AttentionBias) specs.Add(new($"{at}.self_attn.{name}.bias", [outputs], TensorRole.Bias));
            }
            specs.Add(new($"{at}.self_attn.o_proj.weight", [d, q], TensorRole.Weight));
            specs.Add(new($"{at}.post_attention_layernorm.weight", [d], TensorRole.Gain));
            specs.Add(new($"{at}.mlp.gate_proj.weight", [f, d], TensorRole.Weight));
            specs.Add(new($"{at}.mlp.up_proj.weight", [f, d], TensorRole.Weight));
            specs.Add(new($"{at}.mlp.down_proj.weight", [d, f], TensorRole.Weight));
        }
        specs.Add(new("norm.weight", [d], TensorRole.Gain));
        if (!config.TieWordEmbeddings) specs.Add(new("lm_head.weight", [v, d], TensorRole.Weight));
        return specs;
    }

    /// <summary>Throws <see cref="InvalidCheckpointException"/> listing missing, extra and mis-shaped tensors.</summary>
    public static void Check(ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors, string? source = null)
        => CheckShapes(Of(config).ToDictionary(s => s.Name, s => s.Shape),
                       tensors.ToDictionary(t => t.Key, t => t.Value.shape), source ?? "checkpoint");

    /// <summary>Compares expected and found shapes by name; throws naming every difference.</summary>
    public static void CheckShapes(IReadOnlyDictionary<string, long[]> expected, IReadOnlyDictionary<string, long[]> found, string source)
    {
        var missing = expected.Keys.Where(k => !found.ContainsKey(k)).ToList();
        var extra = found.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        var misShaped = expected.Where(e => found.TryGetValue(e.Key, out var shape) && !shape.SequenceEqual(e.Value))
            .Select(e => $"{e.Key} is [{string.Join(", ", found[e.Key])}], expected [{string.Join(", ", e.Value)}]").ToList();
        if (missing.Count + extra.Count + misShaped.Count == 0) return;
        static string List(IReadOnlyList<string> items) =>
            string.Join(", ", items.Take(8)) + (items.Count > 8 ? $" … ({items.Count} in all)" : "");
        var problems = new List<string>();
        if (missing.Count > 0) problems.Add($"missing tensors: {List(missing)}");
        if (extra.Count > 0) problems.Add($"unexpected tensors: {List(extra)}");
        if (misShaped.Count > 0) problems.Add($"mis-shaped tensors: {List(misShaped)}");
        throw new InvalidCheckpointException($"The {source} does not match its configuration: {string.Join("; ", problems)}.");
    }
}
