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
    /// <summary>a + b with a held alpha: TorchSharp's `a + b` makes a temporary Scalar for it (see <see cref="Scalars"/>).</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, Scalars.One);

    /// <summary>a += b in place, with a held alpha (see <see cref="Plus"/>).</summary>
    public static Tensor PlusInPlace(this Tensor a, Tensor b) => a.add_(b, Scalars.One);


    /// <summary>RMSNorm: x / sqrt(mean(x²) + ε) · gain, over the last dimension.</summary>
    public static Tensor RmsNorm(Tensor x, Tensor gain, double eps)
    {
        using var scope = NewDisposeScope();
        using var held = Scalars.Scope();
        // x.pow(2) is what square() computes, with its exponent held.
        return (x * torch.rsqrt(x.pow(Scalars.Two).mean([-1L], keepdim: true).add(held.Of(eps), Scalars.OneDouble)) * gain).MoveToOuterDisposeScope();
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
        if (Autocast.Type is { } reduced) (qh, kh, vh) = (In(qh, reduced), In(kh, reduced), In(vh, reduced));   // attention in bf16, as CUDA autocast runs it
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

    /// <summary>
    /// A linear map x Wᵀ + b; under <see cref="Autocast"/>, computed in its reduced type from cast copies (the fp32 tensors
    /// stay as they are and get fp32 gradients). Every linear map of every method goes through here or <see cref="Project"/>.
    /// </summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (Autocast.Type is not { } reduced) return nn.functional.linear(x, weight, bias);
        // A frozen base resident in the reduced type (Decoder.Reduced) is used as it is: no cast per step.
        return nn.functional.linear(In(x, reduced), In(weight, reduced), bias is null ? null : In(bias, reduced));
    }

    private static Tensor In(Tensor t, ScalarType type) => t.dtype == type ? t : t.to(type);

    /// <summary>A projection module applied to x: a plain linear layer as <see cref="Linear"/> computes it, an adapted one (expansion, adapter) as itself.</summary>
    public static Tensor Project(nn.Module<Tensor, Tensor> projection, Tensor x)
        => Autocast.Type is not null && projection is TorchSharp.Modules.Linear plain ? Linear(x, plain.weight!, plain.bias) : projection.call(x);

    /// <summary>Logits in fp32 whatever the autocast: the loss, the routing rules and the scores read them in full precision.</summary>
    public static Tensor FullPrecision(Tensor logits) => logits.dtype == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);

    /// <summary>Mean token cross-entropy of logits (B, T, V) against targets (B, T).</summary>
    public static Tensor LanguageModelLoss(Tensor logits, Tensor targets)
        => nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1));

    /// <summary>A tensor of normal(0, std) values from the given generator.</summary>
    public static Tensor Normal(long[] shape, double std, Generator generator)
    {
        using var held = Scalars.Scope();
        return torch.randn(shape, generator: generator).mul_(held.Of(std));
    }

    /// <summary>Whether <paramref name="t"/> lives on <paramref name="device"/> (the CPU has one device, whatever its index).</summary>
    public static bool IsOn(Tensor t, Device device)
        => t.device_type == device.type && (device.type == DeviceType.CPU || t.device_index == device.index);

    /// <summary>
    /// <paramref name="t"/> on <paramref name="device"/>: itself when it is there already, else a copy there, the original
    /// freed. A trial's new tensors are initialised on the CPU from its seed and then placed on its trainer's device,
    /// so a trial starts from the same weights on every device.
    /// </summary>
    public static Tensor Place(Tensor t, Device device)
    {
        if (IsOn(t, device)) return t;
        var moved = t.to(device);
        t.Dispose();
        return moved;
    }
}

/// <summary>
/// Mixed precision for the linear maps, a thread's setting (a trial trains and scores on one thread): inside
/// <see cref="Enter"/> with bf16, every linear map multiplies bf16 copies of its input and weights, while the weights,
/// the optimiser, norms, attention softmax and the logits stay fp32 — what CUDA autocast does for matmuls. TorchSharp
/// has no autocast of its own, hence this. Outside, nothing changes: fp32 bit for bit as before.
/// </summary>
internal static class Autocast
{
    [ThreadStatic] private static ScalarType? current;

    /// <summary>The reduced type linear maps compute in on this thread, or null for full precision.</summary>
    public static ScalarType? Type => current;

    /// <summary>Computes linear maps in <paramref name="type"/> (null: full precision) on this thread until disposed.</summary>
    public static IDisposable Enter(ScalarType? type)
    {
        var previous = current;
        current = type;
        return new Restore(previous);
    }

    private sealed class Restore(ScalarType? previous) : IDisposable
    {
        public void Dispose() => current = previous;
    }
}

/// <summary>
/// Rotary position tables for one forward pass, in Hugging Face's rotate-half layout
/// (the first and second halves of a head are the rotated pairs), so HF checkpoints need no permutation.
/// </summary>
internal sealed class Rotary
{
    private readonly Tensor cos;   // (T, hs)
    private readonly Tensor sin;   // (T, hs)

    public Rotary(int headDim, double theta, long start, long length, Device device, RopeScaling? scaling = null)
    {
        // Every number held (see Scalars), with the same values and types as the plain operators would make:
        // 1.0 / t is t.reciprocal().mul(1.0), and arange's bounds and step are integers.
        using var held = Scalars.Scope();
        var exponents = torch.arange(held.Of(0), held.Of(headDim), Scalars.Two, dtype: ScalarType.Int64).to(ScalarType.Float32).div(held.Of(headDim));
        var inverse = torch.pow(torch.tensor(theta), exponents).reciprocal().mul(Scalars.OneDouble);   // theta as a 0-d tensor, as the plain call converts it
        if (scaling is not null)
            inverse = torch.tensor(inverse.data<float>().ToArray().Select(f => (float)scaling.Scale(f)).ToArray());
        var positions = torch.arange(held.Of(start), held.Of(start + length), Scalars.One, dtype: ScalarType.Int64).to(ScalarType.Float32);
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
