using static TorchSharp.torch;

namespace Scale.Model.Transformer;

/// <summary>Keys and values of one attention group, kept across generation steps.</summary>
internal sealed class KvCache : IDisposable
{
    private Tensor? keys;     // (B, kv, S, hs)
    private Tensor? values;   // (B, kv, S, hs)

    /// <summary>Appends this step's keys and values along the sequence and returns the whole history.</summary>
    internal (Tensor Keys, Tensor Values) Append(Tensor k, Tensor v)
    {
        var newKeys = keys is null ? k.alias() : cat([keys, k], dim: 2);
        var newValues = values is null ? v.alias() : cat([values, v], dim: 2);
        keys?.Dispose();
        values?.Dispose();
        // The cache outlives the forward pass's dispose scope.
        keys = newKeys.DetachFromDisposeScope();
        values = newValues.DetachFromDisposeScope();
        return (keys, values);
    }

    public void Dispose()
    {
        keys?.Dispose();
        values?.Dispose();
    }
}

/// <summary>The KV caches of a whole model during greedy generation, one slot per attention group.</summary>
internal sealed class DecodeCache : IDisposable
{
    private readonly Dictionary<int, KvCache> slots = new();

    /// <summary>Tokens already processed; the next forward starts at this position.</summary>
    public long Length { get; private set; }

    internal KvCache Slot(int index)
    {
        if (!slots.TryGetValue(index, out var slot)) slots[index] = slot = new KvCache();
        return slot;
    }

    internal void Advance(long tokens) => Length += tokens;

    public void Dispose()
    {
        foreach (var slot in slots.Values) slot.Dispose();
        slots.Clear();
    }
}
