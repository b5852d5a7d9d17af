using static TorchSharp.torch;

namespace Scale.Model.Transformer;

/// <summary>Greedy decoding with a KV cache (for a model that cannot use one, on the whole sequence at every step).</summary>
internal static class Generation
{
    /// <summary>Continues <paramref name="prompt"/> by up to <paramref name="maxNewTokens"/> argmax tokens,
    /// stopping early at <paramref name="stopToken"/> (which is included). Returns only the new tokens.</summary>
    public static long[] Greedy(CausalLM model, IReadOnlyList<long> prompt, int maxNewTokens, long? stopToken = null)
    {
        if (prompt.Count == 0) throw new ArgumentException("The prompt must hold at least one token.", nameof(prompt));
        if (maxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), "must be zero or more");
        foreach (var id in prompt)
            if (id < 0 || id >= model.Config.VocabSize)
                throw new ArgumentException($"Token id {id} is outside the vocabulary [0, {model.Config.VocabSize}).", nameof(prompt));
        var device = model.Device;
        using var noGrad = no_grad();
        using var cache = model.SupportsCache ? new DecodeCache() : null;
        var generated = new List<long>();
        var input = prompt.ToArray();
        var all = prompt.ToList();
        for (int step = 0; step < maxNewTokens; step++)
        {
            using var scope = NewDisposeScope();
            var logits = model.Forward(tensor(input, device: device).unsqueeze(0), cache);   // (1, T, V)
            long next = logits[0, -1].argmax().item<long>();
            generated.Add(next);
            if (next == stopToken) break;
            all.Add(next);
            input = cache is null ? all.ToArray() : [next];
        }
        return generated.ToArray();
    }
}
