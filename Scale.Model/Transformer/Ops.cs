using TorchSharp;
using static TorchSharp.torch;

namespace Scale.Model.Transformer;

/// <summary>Small pure functions for the decoder's maths, shared by the base model and every variant
/// so that the original stream is computed by exactly the same operations everywhere. Each function keeps
/// its temporaries in a dispose scope of its own: a tensor that autograd needs stays alive through autograd,
/// and everything else is freed at once instead of at the end of the whole forward pass (measured on the
/// bench configuration: the forward's peak memory fell by hundreds of MB).</summary>
internal static class Ops
{
    /// <summary>
    /// The alpha of a plain sum, held for the life of the process. TorchSharp's `a + b` and `a - b` create a temporary
    /// Scalar for alpha that nothing keeps alive during the native call; a GC on another thread can finalise it while
    /// libtorch reads it (seen in CI as garbled scalars). Hot paths use <see cref="Plus"/> instead.
    /// </summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary>a + b, with a held alpha (see <see cref="One"/>).</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);


    /// <summary>RMSNorm: x / sqrt(mean(x²) + ε) · gain, over the last dimension.</summary>
    public static Tensor RmsNorm(Tensor x, Tensor gain, double eps)
    {
        using var scope = NewDisposeScope();
        // Scalars held explicitly (see AdamW.Step): a temporary could be finalised mid-call.
        using var epsilon = eps.ToScalar();
        using var one = 1.0.ToScalar();
        return (x * torch.rsqrt(x.square().mean([-1L], keepdim: true).add(epsilon, one)) * gain).MoveToOuterDisposeScope();
    }

    /// <summary>SwiGLU: silu(gate) ⊙ up.</summary>
    public static Tensor SwiGlu(Tensor gate, Tensor up)
    {
        using var scope = NewDisposeScope();
        return (nn.functional.silu(gate) * up).MoveToOuterDisposeScope();
    }

    /// <summary>(B, T, n·hs) → (B, n, T, hs).</summary>
    public static Tensor SplitHeads(Tensor x, int heads)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        return x.view(b, t, heads, -1).transpose(1, 2);
    }

    /// <summary>(B, n, T, hs) → (B, T, n·hs).</summary>
    public static Tensor MergeHeads(Tensor x)
    {
        var (b, n, t, hs) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        return x.transpose(1, 2).reshape(b, t, n * hs);
    }

    /// <summary>Grouped-query attention: (B, kv, S, hs) → (B, kv·groups, S, hs), each kv head repeated for its group.</summary>
    public static Tensor RepeatKv(Tensor x, int groups)
    {
        if (groups == 1) return x;
        var (b, kv, s, hs) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        return x.unsqueeze(2).expand(b, kv, groups, s, hs).reshape(b, kv * groups, s, hs);
    }

    /// <summary>
    /// Causal attention of one group of heads. q: (B, T, h·hs); k, v: (B, T, kv·hs).
    /// Positions start at the cache's length; the cache, when given, receives this call's keys and values.
    /// Returns (B, T, h·hs).
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, Rotary rope, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var qh = rope.Apply(SplitHeads(q, heads));        // (B, h, T, hs)
        var kh = rope.Apply(SplitHeads(k, kvHeads));      // (B, kv, T, hs)
        var vh = SplitHeads(v, kvHeads);                  // (B, kv, T, hs)
        if (cache is not null) (kh, vh) = cache.Append(kh, vh);   // (B, kv, S, hs)
        kh = RepeatKv(kh, heads / kvHeads);               // (B, h, S, hs)
        vh = RepeatKv(vh, heads / kvHeads);
        long t = qh.shape[2], s = kh.shape[2];
        Tensor attended;
        if (t == s)
            attended = nn.functional.scaled_dot_product_attention(qh, kh, vh, null, 0.0, true);
        else if (t == 1)
            attended = nn.functional.scaled_dot_product_attention(qh, kh, vh);
        else
        {
            // Queries at positions s-t .. s-1 see keys 0 .. their own position.
            var allowed = torch.ones(t, s, dtype: ScalarType.Bool, device: q.device).tril(s - t);
            attended = nn.functional.scaled_dot_product_attention(qh, kh, vh, attn_mask: allowed);
        }
        return MergeHeads(attended).MoveToOuterDisposeScope();   // (B, T, h·hs)
    }

    /// <summary>Mean token cross-entropy of logits (B, T, V) against targets (B, T).</summary>
    public static Tensor LanguageModelLoss(Tensor logits, Tensor targets)
        => nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1));

    /// <summary>A tensor of normal(0, std) values from the given generator.</summary>
    public static Tensor Normal(long[] shape, double std, Generator generator)
        => torch.randn(shape, generator: generator).mul_(std);
}

/// <summary>
/// Rotary position tables for one forward pass, in Hugging Face's rotate-half layout
/// (the first and second halves of a head are the rotated pairs), so HF checkpoints need no permutation.
/// </summary>
internal sealed class Rotary
{
    private readonly Tensor cos;   // (T, hs)
    private readonly Tensor sin;   // (T, hs)

    public Rotary(int headDim, double theta, long start, long length, Device device)
    {
        // The divisor held for the whole computation (see Ops.One); the same value and type as the plain operator.
        using var dimension = headDim.ToScalar();
        var inverse = 1.0 / torch.pow(theta, torch.arange(0, headDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / dimension);
        var positions = torch.arange(start, start + length, dtype: ScalarType.Int64).to(ScalarType.Float32);
        var angles = torch.outer(positions, inverse);               // (T, hs/2)
        var both = torch.cat([angles, angles], dim: -1);            // (T, hs)
        cos = both.cos().to(device);
        sin = both.sin().to(device);
    }

    /// <summary>x: (B, n, T, hs) → x·cos + rotate_half(x)·sin.</summary>
    public Tensor Apply(Tensor x)
    {
        using var scope = NewDisposeScope();
        long half = x.shape[^1] / 2;
        var rotated = torch.cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], dim: -1);
        return (x * cos).Plus(rotated * sin).MoveToOuterDisposeScope();
    }
}
