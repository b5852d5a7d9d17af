using static TorchSharp.torch;

namespace Scale.Model.Transformer;

/// <summary>
/// What the frozen base computes inside one block, kept for the trials that read it: the stream entering the block and
/// the input of each linear map (the normed stream for q, k, v; the attention's output for o; the normed stream for
/// gate and up; the gated units for down). (B, T, d) each, the gated units (B, T, f).
/// </summary>
internal sealed record BlockTrace(Tensor Stream, Tensor AttentionInput, Tensor Attended, Tensor MlpInput, Tensor Gated);

/// <summary>
/// The frozen base's forward pass over one batch, without autograd, kept so that several trials reading the same batch
/// share it (lock-step groups): a SCALE trial whose original stream is the base's below its first W12 takes that stream
/// and every input its new blocks read from here instead of computing them again. Computed by exactly the operations
/// the trials' own original stream runs (<see cref="Decoder.Trace"/>), so a trial's step is the same bits either way.
/// Owns its tensors: dispose it when every trial has taken its step.
/// </summary>
internal sealed class BaseTrace : IDisposable
{
    private readonly List<Tensor> owned = [];

    internal BaseTrace(Tensor tokens, IReadOnlyList<BlockTrace> blocks, Tensor stream, Tensor? finalInput, Tensor? logits)
    {
        Tokens = tokens;
        Blocks = blocks;
        StreamAfter = stream;
        (FinalInput, Logits) = (finalInput, logits);
        owned.Add(tokens);
        foreach (var b in blocks) owned.AddRange([b.Stream, b.AttentionInput, b.Attended, b.MlpInput, b.Gated]);
        owned.Add(stream);
        if (finalInput is not null) owned.Add(finalInput);
        if (logits is not null) owned.Add(logits);
        foreach (var t in owned) t.DetachFromDisposeScope();
    }

    /// <summary>The inputs (B, T) the trace was computed on.</summary>
    public Tensor Tokens { get; }

    /// <summary>Blocks traced from the bottom: a trial takes from it the blocks below its first W12, at most these.</summary>
    public int Depth => Blocks.Count;

    internal IReadOnlyList<BlockTrace> Blocks { get; }

    /// <summary>The base's stream after the last traced block (B, T, d): the input of block <see cref="Depth"/>.</summary>
    internal Tensor StreamAfter { get; }

    /// <summary>When every block is traced: the final norm's output (B, T, d) and the base's logits H·norm(x) (B, T, V), in the linear maps' type.</summary>
    internal Tensor? FinalInput { get; }
    internal Tensor? Logits { get; }

    /// <summary>The base's stream entering block <paramref name="layer"/> (0 ≤ layer ≤ Depth).</summary>
    internal Tensor StreamAt(int layer) => layer == Depth ? StreamAfter : Blocks[layer].Stream;

    /// <summary>Whether this trace was computed on <paramref name="tokens"/> (same shape and values).</summary>
    public bool IsFor(Tensor tokens) => tokens.shape.SequenceEqual(Tokens.shape) && tokens.device_type == Tokens.device_type && Tokens.eq(tokens).all().item<bool>();

    /// <summary>Bytes held, for the memory figures.</summary>
    public long Bytes => owned.Sum(t => t.numel() * t.ElementSize);

    public void Dispose()
    {
        foreach (var t in owned) t.Dispose();
        owned.Clear();
    }
}
