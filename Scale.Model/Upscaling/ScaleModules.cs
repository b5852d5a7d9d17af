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
///   [ y   ]   [ W    W12 ] [ x   ]        y   = W x + g·(W12 x_u)
///   [ y_u ] = [ W21  W22 ] [ x_u ]        y_u = W21 x + W22 x_u
/// </code>
/// g is SCALE-Route's per-token gate (absent for Preserve and Adapt). W12 is null where it is fixed at zero.
/// </summary>
internal sealed class ScaleLinear : nn.Module
{
    private readonly Parameter weight;    // W   (out, in)     frozen, the base's own tensor
    private readonly Parameter? bias;     //     (out)         frozen, the base's own tensor
    private readonly Parameter? w12;      // W12 (out, in_u)   zero at init
    private readonly Parameter w21;       // W21 (out_u, in)
    private readonly Parameter w22;       // W22 (out_u, in_u)

    public ScaleLinear(Linear baseLinear, long inUp, long outUp, BlockTraining train, double initScale, Generator g)
        : base(nameof(ScaleLinear))
    {
        weight = baseLinear.weight!;
        bias = baseLinear.bias;
        var (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1]);
        w12 = train.W12 ? new Parameter(torch.zeros(outFeatures, inUp)) : null;
        w21 = new Parameter(Ops.Normal([outUp, inFeatures], initScale, g), train.W21);
        w22 = new Parameter(Ops.Normal([outUp, inUp], initScale, g), train.W22);
        RegisterComponents();
    }

    public (Tensor Y, Tensor YUp) Forward(Tensor x, Tensor xu, Tensor? gate)
        => (Original(x, xu, gate), Upscaled(x, xu, w21, w22));

    /// <summary>W21 x + W22 x_u, the second product added in place (a linear map's backward never needs its output).</summary>
    private static Tensor Upscaled(Tensor x, Tensor xu, Tensor w21, Tensor w22)
        => nn.functional.linear(x, w21).PlusInPlace(nn.functional.linear(xu, w22));

    /// <summary>y = W x + g·(W12 x_u): exactly the base's operation when W12 is absent.</summary>
    private Tensor Original(Tensor x, Tensor xu, Tensor? gate)
    {
        var y = nn.functional.linear(x, weight, bias);
        if (w12 is null) return y;
        var adaptation = nn.functional.linear(xu, w12);
        return y.Plus(gate is null ? adaptation : gate * adaptation);
    }

    /// <summary>
    /// Several widened maps that read the same input (q, k, v; gate, up), computed together: the new outputs
    /// come from one W21 and one W22 product over the concatenated blocks instead of one small product each,
    /// which keeps the matrix units busy (the original outputs stay separate, as in the base).
    /// </summary>
    public static (Tensor Y, Tensor YUp)[] ForwardShared(Tensor x, Tensor xu, Tensor? gate, params ScaleLinear[] maps)
    {
        var w21 = torch.cat(maps.Select(m => (Tensor)m.w21).ToArray(), 0);   // (Σ out_u, in)
        var w22 = torch.cat(maps.Select(m => (Tensor)m.w22).ToArray(), 0);   // (Σ out_u, in_u)
        var upscaled = Upscaled(x, xu, w21, w22).split(maps.Select(m => m.w21.shape[0]).ToArray(), -1);
        return maps.Select((m, i) => (m.Original(x, xu, gate), upscaled[i])).ToArray();
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
        weight_u = new Parameter(torch.ones(widthUp), trainUp);
        eps = baseNorm.Eps;
        RegisterComponents();
    }

    public (Tensor H, Tensor HUp) Forward(Tensor x, Tensor xu) => (Ops.RmsNorm(x, weight, eps), Ops.RmsNorm(xu, weight_u, eps));
}

/// <summary>
/// SCALE-Route's router: g = sigmoid(w·h + w_c·c + b), one gate per token, reading the normalised original stream h,
/// the base's confidence features c (entropy / log V, top probability), or both; hard gates are 0/1 forward with the
/// sigmoid's gradient (straight-through).
/// </summary>
internal sealed class Router : nn.Module
{
    private readonly Parameter? weight;             // (1, d)   when it reads the hidden state
    private readonly Parameter? confidence_weight;  // (1, 2)   when it reads the base's confidence
    private readonly Parameter bias;                // (1)
    private readonly bool hard;

    public Router(long width, RouterSpec spec, bool train, double initScale, Generator g) : base(nameof(Router))
    {
        if (spec.Input is RouterInput.Hidden or RouterInput.Both) weight = new Parameter(Ops.Normal([1, width], initScale, g), train);
        if (spec.Input is RouterInput.Confidence or RouterInput.Both) confidence_weight = new Parameter(Ops.Normal([1, 2], initScale, g), train);
        using (var held = Scalars.Scope()) bias = new Parameter(torch.full(1, held.Of(spec.InitBias)), train);
        hard = spec.Hard;
        RegisterComponents();
    }

    public bool ReadsConfidence => confidence_weight is not null;

    /// <summary>h: (B, T, d), confidence: (B, T, 2) or null → g: (B, T, 1).</summary>
    public Tensor Forward(Tensor h, Tensor? confidence)
    {
        using var scope = NewDisposeScope();
        var z = weight is not null ? nn.functional.linear(h, weight, bias) : bias.expand(h.shape[0], h.shape[1], 1);
        if (confidence_weight is not null) z = z.Plus(nn.functional.linear(confidence!, confidence_weight));
        var soft = torch.sigmoid(z);
        if (!hard) return soft.MoveToOuterDisposeScope();
        var step = soft.ge(Scalars.Half).to(soft.dtype);
        return step.Plus(soft - soft.detach()).MoveToOuterDisposeScope();   // exactly 0/1 forward; the sigmoid's gradient backward
    }
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

    public (Tensor A, Tensor AUp) Forward(Tensor h, Tensor hu, Tensor? gate, Rotary rope, KvCache? baseCache, KvCache? upCache)
    {
        using var scope = NewDisposeScope();
        var qkv = ScaleLinear.ForwardShared(h, hu, gate, q_proj, k_proj, v_proj);
        var ((q, qu), (k, ku), (v, vu)) = (qkv[0], qkv[1], qkv[2]);      // (B, T, h·hs | kv·hs), (B, T, h_u·hs)
        var a = Ops.Attend(q, k, v, heads, kvHeads, rope, baseCache);   // (B, T, h·hs)
        var au = Ops.Attend(qu, ku, vu, headsUp, headsUp, rope, upCache);  // (B, T, h_u·hs)
        var (o, ou) = o_proj.Forward(a, au, gate);                       // (B, T, d), (B, T, d_u)
        return (o.MoveToOuterDisposeScope(), ou.MoveToOuterDisposeScope());
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

    public (Tensor M, Tensor MUp) Forward(Tensor h, Tensor hu, Tensor? gate)
    {
        using var scope = NewDisposeScope();
        var gateUp = ScaleLinear.ForwardShared(h, hu, gate, gate_proj, up_proj);
        var ((g, gu), (u, uu)) = (gateUp[0], gateUp[1]);   // (B, T, f), (B, T, f_u)
        var (m, mu) = down_proj.Forward(Ops.SwiGlu(g, u), Ops.SwiGlu(gu, uu), gate);
        return (m.MoveToOuterDisposeScope(), mu.MoveToOuterDisposeScope());
    }
}

/// <summary>A widened pre-norm block; the original stream follows exactly the base block's operations.</summary>
internal sealed class ScaleBlock : nn.Module
{
    private readonly SplitRmsNorm input_layernorm;
    private readonly Router? router;
    private readonly ScaleAttention self_attn;
    private readonly SplitRmsNorm post_attention_layernorm;
    private readonly ScaleMlp mlp;

    public ScaleBlock(SplitRmsNorm inputNorm, Router? router, ScaleAttention attention, SplitRmsNorm postNorm, ScaleMlp mlp)
        : base(nameof(ScaleBlock))
    {
        input_layernorm = inputNorm;
        this.router = router;
        self_attn = attention;
        post_attention_layernorm = postNorm;
        this.mlp = mlp;
        RegisterComponents();
    }

    public (Tensor X, Tensor XUp) Forward(Tensor x, Tensor xu, Rotary rope, GateSource gates, KvCache? baseCache, KvCache? upCache)
    {
        using var scope = NewDisposeScope();
        var (h, hu) = input_layernorm.Forward(x, xu);
        var gate = gates.For(router, h)?.MoveToOuterDisposeScope();       // (B, T, 1) or null; outlives the block (penalty)
        var (a, au) = self_attn.Forward(h, hu, gate, rope, baseCache, upCache);
        (x, xu) = (x.Plus(a), xu.Plus(au));
        (h, hu) = post_attention_layernorm.Forward(x, xu);
        var (m, mu) = mlp.Forward(h, hu, gate);
        return (x.Plus(m).MoveToOuterDisposeScope(), xu.Plus(mu).MoveToOuterDisposeScope());
    }
}

/// <summary>Where a forward pass takes its gates from: the routers, or a forced constant (tests and ablations);
/// optionally records them for the penalty.</summary>
internal sealed class GateSource(double? forced, List<Tensor>? record, Tensor? confidence = null)
{
    public Tensor? For(Router? router, Tensor h)
    {
        if (router is null) return null;
        using var held = Scalars.Scope();
        var gate = forced is { } value
            ? torch.full(h.shape[0], h.shape[1], 1, held.Of(value), dtype: h.dtype, device: h.device)
            : router.Forward(h, confidence);
        record?.Add(gate);
        return gate;
    }
}
