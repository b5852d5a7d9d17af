using Scale.Model.Transformer;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Scale.Model.Upscaling;

// Field names are checkpoint names: the base's tensors keep the base's names (weight, bias), the new
// blocks are w12 / w21 / w22 / weight_u, so a trial checkpoint reads like the block matrix.

/// <summary>
/// A widened linear map around a frozen base weight W:
/// <code>
///   [ y   ]   [ W    W12 ] [ x   ]        y   = W x + W12 x_u
///   [ y_u ] = [ W21  W22 ] [ x_u ]        y_u = W21 x + W22 x_u
/// </code>
/// W12 is null where it is fixed at zero.
/// </summary>
internal sealed class ScaleLinear : nn.Module
{
    private readonly Parameter weight;    // W   (out, in)     frozen, the base's own tensor
    private readonly Parameter? bias;     //     (out)         frozen, the base's own tensor
    private readonly Parameter? w12;      // W12 (out, in_u)   zero at init
    private readonly Parameter w21;       // W21 (out_u, in)
    private readonly Parameter w22;       // W22 (out_u, in_u)

    public ScaleLinear(Linear baseLinear, long inUp, long outUp, BlockTraining train, double initScale, ExpansionInit init, Generator g)
        : base(nameof(ScaleLinear))
    {
        weight = baseLinear.weight!;
        bias = baseLinear.bias;
        var (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1]);
        var device = weight.device;
        w12 = train.W12 ? new Parameter(torch.zeros(outFeatures, inUp, device: device)) : null;
        var (w21Init, w22Init) = init == ExpansionInit.Svd
            ? SvdInit(weight, inUp, outUp, initScale, g)
            : (Ops.Normal([outUp, inFeatures], initScale, g), Ops.Normal([outUp, inUp], initScale, g));
        w21 = new Parameter(Ops.Place(w21Init, device), train.W21);
        w22 = new Parameter(Ops.Place(w22Init, device), train.W22);
        RegisterComponents();
    }

    /// <summary>
    /// SCALE's SVD initialisation as this project reads it (docs/method.md): with W = U Σ Vᵀ, row i of W21 is vᵢ·InitScale·√in
    /// (the norm a normal(0, InitScale) row has on average), so new output i reads the base input's i-th leading direction;
    /// W22 is InitScale·√in_u·σᵢ/σ₁ on its leading diagonal, zero elsewhere. Rows of W21 past W's rank are normal.
    /// Computed on the CPU whatever W's device, so the initial blocks are the same bits on every device.
    /// </summary>
    internal static (Tensor W21, Tensor W22) SvdInit(Tensor weight, long inUp, long outUp, double initScale, Generator g)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var held = Scalars.Scope();
        long inFeatures = weight.shape[1];
        var (_, sigma, vh) = torch.linalg.svd(weight.detach().cpu().to(ScalarType.Float32), fullMatrices: false);   // Σ (r), Vᵀ (r, in)
        long rank = sigma.shape[0], rows = Math.Min(outUp, rank);
        var w21 = Ops.Normal([outUp, inFeatures], initScale, g);
        w21.narrow(0, 0, rows).copy_(vh.narrow(0, 0, rows).mul(held.Of(initScale * Math.Sqrt(inFeatures))));
        var w22 = torch.zeros(outUp, inUp);
        long diagonal = Math.Min(Math.Min(outUp, inUp), rank);
        if (diagonal > 0)
        {
            var scaled = sigma.narrow(0, 0, diagonal).div(sigma[0].clamp_min(held.Of(1e-12))).mul(held.Of(initScale * Math.Sqrt(Math.Max(inUp, 1))));
            w22.narrow(0, 0, diagonal).narrow(1, 0, diagonal).copy_(torch.diag(scaled));
        }
        return (w21.MoveToOuterDisposeScope(), w22.MoveToOuterDisposeScope());
    }

    /// <summary>Whether this map has a W12: the one path by which the expansion changes the original stream.</summary>
    public bool HasW12 => w12 is not null;

    public (Tensor Y, Tensor YUp) Forward(Tensor x, Tensor xu)
        => (Original(x, xu), Upscaled(x, xu, w21, w22));

    /// <summary>W21 x + W22 x_u, the second product added in place (a linear map's backward never needs its output).</summary>
    private static Tensor Upscaled(Tensor x, Tensor xu, Tensor w21, Tensor w22)
        => Ops.Linear(x, w21).PlusInPlace(Ops.Linear(xu, w22));

    /// <summary>y = W x + W12 x_u: exactly the base's operation when W12 is absent.</summary>
    private Tensor Original(Tensor x, Tensor xu)
    {
        var y = Ops.Linear(x, weight, bias);
        return w12 is null ? y : y.Plus(Ops.Linear(xu, w12));
    }

    /// <summary>y_u = W21 x + W22 x_u alone: the new outputs, when the original y comes from the base (a <see cref="BaseTrace"/>).</summary>
    public Tensor ForwardUp(Tensor x, Tensor xu) => Upscaled(x, xu, w21, w22);

    /// <summary>The new outputs of several maps that read the same input, as <see cref="ForwardShared"/> computes them (the same bits).</summary>
    public static Tensor[] ForwardUpShared(Tensor x, Tensor xu, params ScaleLinear[] maps)
    {
        var w21 = torch.cat(maps.Select(m => (Tensor)m.w21).ToArray(), 0);   // (Σ out_u, in)
        var w22 = torch.cat(maps.Select(m => (Tensor)m.w22).ToArray(), 0);   // (Σ out_u, in_u)
        return Upscaled(x, xu, w21, w22).split(maps.Select(m => m.w21.shape[0]).ToArray(), -1);
    }

    /// <summary>
    /// Several widened maps that read the same input (q, k, v; gate, up), computed together: the new outputs
    /// come from one W21 and one W22 product over the concatenated blocks instead of one small product each,
    /// which keeps the matrix units busy (the original outputs stay separate, as in the base).
    /// </summary>
    public static (Tensor Y, Tensor YUp)[] ForwardShared(Tensor x, Tensor xu, params ScaleLinear[] maps)
    {
        var w21 = torch.cat(maps.Select(m => (Tensor)m.w21).ToArray(), 0);   // (Σ out_u, in)
        var w22 = torch.cat(maps.Select(m => (Tensor)m.w22).ToArray(), 0);   // (Σ out_u, in_u)
        var upscaled = Upscaled(x, xu, w21, w22).split(maps.Select(m => m.w21.shape[0]).ToArray(), -1);
        return maps.Select((m, i) => (m.Original(x, xu), upscaled[i])).ToArray();
    }
}

/// <summary>Which of a linear map's new blocks train.</summary>
internal readonly record struct BlockTraining(bool W12, bool W21, bool W22);

/// <summary>Split RMSNorm: the original part is normalised over original coordinates only (with the base's gain),
/// the upscaled part over its own (with a new gain), so the original stream is never rescaled.</summary>
internal sealed class SplitRmsNorm : nn.Module
{
    private readonly Parameter weight;     // (d)   frozen, the base's gain
    private readonly Parameter weight_u;   // (d_u) new gain, ones at init
    private readonly double eps;

    public SplitRmsNorm(RmsNorm baseNorm, long widthUp, bool trainUp) : base(nameof(SplitRmsNorm))
    {
        weight = baseNorm.Weight;
        weight_u = new Parameter(torch.ones(widthUp, device: weight.device), trainUp);
        eps = baseNorm.Eps;
        RegisterComponents();
    }

    public (Tensor H, Tensor HUp) Forward(Tensor x, Tensor xu) => (Ops.RmsNorm(x, weight, eps), Ops.RmsNorm(xu, weight_u, eps));

    /// <summary>The upscaled part alone (the original part comes from the base's trace).</summary>
    public Tensor ForwardUp(Tensor xu) => Ops.RmsNorm(xu, weight_u, eps);
}

/// <summary>Attention with h base heads (reading the original stream) and h_u new heads (reading the
/// upscaled stream); each group attends on its own, so new heads never alter the base heads' pattern.</summary>
internal sealed class ScaleAttention : nn.Module
{
    private readonly ScaleLinear q_proj, k_proj, v_proj, o_proj;
    private readonly int heads, kvHeads, headsUp;

    public ScaleAttention(ScaleLinear q, ScaleLinear k, ScaleLinear v, ScaleLinear o, int heads, int kvHeads, int headsUp)
        : base(nameof(ScaleAttention))
    {
        (q_proj, k_proj, v_proj, o_proj) = (q, k, v, o);
        (this.heads, this.kvHeads, this.headsUp) = (heads, kvHeads, headsUp);
        RegisterComponents();
    }

    public bool HasW12 => q_proj.HasW12 || k_proj.HasW12 || v_proj.HasW12 || o_proj.HasW12;

    public (Tensor A, Tensor AUp) Forward(Tensor h, Tensor hu, Rotary rope, KvCache? baseCache, KvCache? upCache)
    {
        using var scope = NewDisposeScope();
        var qkv = ScaleLinear.ForwardShared(h, hu, q_proj, k_proj, v_proj);
        var ((q, qu), (k, ku), (v, vu)) = (qkv[0], qkv[1], qkv[2]);      // (B, T, h·hs | kv·hs), (B, T, h_u·hs)
        var a = Ops.Attend(q, k, v, heads, kvHeads, rope, baseCache);   // (B, T, h·hs)
        var au = Ops.Attend(qu, ku, vu, headsUp, headsUp, rope, upCache);  // (B, T, h_u·hs)
        var (o, ou) = o_proj.Forward(a, au);                       // (B, T, d), (B, T, d_u)
        return (o.MoveToOuterDisposeScope(), ou.MoveToOuterDisposeScope());
    }

    /// <summary>The new heads alone, on the base's attention inputs and output from <paramref name="trace"/>: (B, T, d_u).</summary>
    internal Tensor ForwardUp(BlockTrace trace, Tensor hu, Rotary rope)
    {
        using var scope = NewDisposeScope();
        var qkv = ScaleLinear.ForwardUpShared(trace.AttentionInput, hu, q_proj, k_proj, v_proj);   // 3 × (B, T, h_u·hs)
        var au = Ops.Attend(qkv[0], qkv[1], qkv[2], headsUp, headsUp, rope, null);                 // (B, T, h_u·hs)
        return o_proj.ForwardUp(trace.Attended, au).MoveToOuterDisposeScope();                      // (B, T, d_u)
    }
}

/// <summary>SwiGLU with f base units and f_u new units.</summary>
internal sealed class ScaleMlp : nn.Module
{
    private readonly ScaleLinear gate_proj, up_proj, down_proj;

    public ScaleMlp(ScaleLinear gate, ScaleLinear up, ScaleLinear down) : base(nameof(ScaleMlp))
    {
        (gate_proj, up_proj, down_proj) = (gate, up, down);
        RegisterComponents();
    }

    public bool HasW12 => gate_proj.HasW12 || up_proj.HasW12 || down_proj.HasW12;

    public (Tensor M, Tensor MUp) Forward(Tensor h, Tensor hu)
    {
        using var scope = NewDisposeScope();
        var gateUp = ScaleLinear.ForwardShared(h, hu, gate_proj, up_proj);
        var ((g, gu), (u, uu)) = (gateUp[0], gateUp[1]);   // (B, T, f), (B, T, f_u)
        var (m, mu) = down_proj.Forward(Ops.SwiGlu(g, u), Ops.SwiGlu(gu, uu));
        return (m.MoveToOuterDisposeScope(), mu.MoveToOuterDisposeScope());
    }

    /// <summary>The new units alone, on the base's MLP input and gated units from <paramref name="trace"/>: (B, T, d_u).</summary>
    internal Tensor ForwardUp(BlockTrace trace, Tensor hu)
    {
        using var scope = NewDisposeScope();
        var gateUp = ScaleLinear.ForwardUpShared(trace.MlpInput, hu, gate_proj, up_proj);   // (B, T, f_u) each
        return down_proj.ForwardUp(trace.Gated, Ops.SwiGlu(gateUp[0], gateUp[1])).MoveToOuterDisposeScope();
    }
}

/// <summary>A widened pre-norm block; the original stream follows exactly the base block's operations.</summary>
internal sealed class ScaleBlock : nn.Module
{
    private readonly SplitRmsNorm input_layernorm;
    private readonly ScaleAttention self_attn;
    private readonly SplitRmsNorm post_attention_layernorm;
    private readonly ScaleMlp mlp;

    public ScaleBlock(SplitRmsNorm inputNorm, ScaleAttention attention, SplitRmsNorm postNorm, ScaleMlp mlp)
        : base(nameof(ScaleBlock))
    {
        input_layernorm = inputNorm;
        self_attn = attention;
        post_attention_layernorm = postNorm;
        this.mlp = mlp;
        RegisterComponents();
    }

    /// <summary>Whether any of the block's maps has a W12 (below the first such block the original stream is the base's).</summary>
    public bool HasW12 => self_attn.HasW12 || mlp.HasW12;

    public (Tensor X, Tensor XUp) Forward(Tensor x, Tensor xu, Rotary rope, KvCache? baseCache, KvCache? upCache)
    {
        using var scope = NewDisposeScope();
        var (h, hu) = input_layernorm.Forward(x, xu);
        var (a, au) = self_attn.Forward(h, hu, rope, baseCache, upCache);
        (x, xu) = (x.Plus(a), xu.Plus(au));
        (h, hu) = post_attention_layernorm.Forward(x, xu);
        var (m, mu) = mlp.Forward(h, hu);
        return (x.Plus(m).MoveToOuterDisposeScope(), xu.Plus(mu).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The upscaled stream alone, for a block without W12 whose original stream the base computed (<paramref name="trace"/>):
    /// the same operations on the upscaled side as <see cref="Forward"/>, reading the base's values where it reads x.
    /// </summary>
    internal Tensor ForwardUp(BlockTrace trace, Tensor xu, Rotary rope)
    {
        using var scope = NewDisposeScope();
        xu = xu.Plus(self_attn.ForwardUp(trace, input_layernorm.ForwardUp(xu), rope));
        return xu.Plus(mlp.ForwardUp(trace, post_attention_layernorm.ForwardUp(xu))).MoveToOuterDisposeScope();
    }
}
