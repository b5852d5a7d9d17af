using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Scale.Model.Transformer;

// Submodule and parameter field names are the checkpoint names (HF Llama layout), hence snake_case.

/// <summary>RMSNorm with a learned gain.</summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;   // (d)
    private readonly double eps;

    public RmsNorm(Parameter weight, double eps) : base(nameof(RmsNorm))
    {
        this.weight = weight;
        this.eps = eps;
        RegisterComponents();
    }

    public static RmsNorm Ones(int width, double eps) => new(new Parameter(torch.ones(width)), eps);

    internal Parameter Weight => weight;
    internal double Eps => eps;

    public override Tensor forward(Tensor x) => Ops.RmsNorm(x, weight, eps);
}

/// <summary>Token embedding: a lookup of rows of E (V, d). (TorchSharp's Embedding hands out a new wrapper of its
/// weight on every access, which defeats sharing the base's tensors by reference.)</summary>
internal sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;   // (V, d)

    public TokenEmbedding(Parameter weight) : base(nameof(TokenEmbedding))
    {
        this.weight = weight;
        RegisterComponents();
    }

    internal Parameter Weight => weight;

    /// <summary>tokens (B, T) → (B, T, d).</summary>
    public override Tensor forward(Tensor tokens) => Lookup(weight, tokens);

    /// <summary>Rows of <paramref name="table"/> for <paramref name="tokens"/> (B, T) → (B, T, d), in fp32 whatever the table's type: the residual stream is fp32.</summary>
    internal static Tensor Lookup(Tensor table, Tensor tokens)
    {
        var rows = table.index_select(0, tokens.reshape(-1)).view(tokens.shape[0], tokens.shape[1], -1);
        return rows.dtype == ScalarType.Float32 ? rows : rows.to(ScalarType.Float32);
    }
}

/// <summary>Causal self-attention with rotary positions and grouped-query heads.</summary>
internal sealed class Attention : nn.Module
{
    private readonly nn.Module<Tensor, Tensor> q_proj;   // d → h·hs
    private readonly nn.Module<Tensor, Tensor> k_proj;   // d → kv·hs
    private readonly nn.Module<Tensor, Tensor> v_proj;   // d → kv·hs
    private readonly nn.Module<Tensor, Tensor> o_proj;   // h·hs → d
    private readonly int heads, kvHeads;

    public Attention(nn.Module<Tensor, Tensor> q, nn.Module<Tensor, Tensor> k, nn.Module<Tensor, Tensor> v,
                     nn.Module<Tensor, Tensor> o, int heads, int kvHeads) : base(nameof(Attention))
    {
        (q_proj, k_proj, v_proj, o_proj) = (q, k, v, o);
        (this.heads, this.kvHeads) = (heads, kvHeads);
        RegisterComponents();
    }

    internal IReadOnlyList<(string Name, nn.Module<Tensor, Tensor> Module)> Projections =>
        [("q_proj", q_proj), ("k_proj", k_proj), ("v_proj", v_proj), ("o_proj", o_proj)];

    internal int Heads => heads;
    internal int KvHeads => kvHeads;

    internal Tensor Forward(Tensor h, Rotary rope, KvCache? cache) => Output(Attended(h, rope, cache));

    /// <summary>The heads' output before o_proj: (B, T, h·hs).</summary>
    internal Tensor Attended(Tensor h, Rotary rope, KvCache? cache)
        => Ops.Attend(Ops.Project(q_proj, h), Ops.Project(k_proj, h), Ops.Project(v_proj, h), heads, kvHeads, rope, cache);

    /// <summary>o_proj of the heads' output.</summary>
    internal Tensor Output(Tensor attended) => Ops.Project(o_proj, attended);
}

/// <summary>SwiGLU feed-forward: down(silu(gate(h)) ⊙ up(h)).</summary>
internal sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> gate_proj;   // d → f
    private readonly nn.Module<Tensor, Tensor> up_proj;     // d → f
    private readonly nn.Module<Tensor, Tensor> down_proj;   // f → d

    public Mlp(nn.Module<Tensor, Tensor> gate, nn.Module<Tensor, Tensor> up, nn.Module<Tensor, Tensor> down) : base(nameof(Mlp))
    {
        (gate_proj, up_proj, down_proj) = (gate, up, down);
        RegisterComponents();
    }

    internal IReadOnlyList<(string Name, nn.Module<Tensor, Tensor> Module)> Projections =>
        [("gate_proj", gate_proj), ("up_proj", up_proj), ("down_proj", down_proj)];

    public override Tensor forward(Tensor h)
    {
        using var scope = NewDisposeScope();
        return Down(Gated(h)).MoveToOuterDisposeScope();
    }

    /// <summary>silu(gate(h)) ⊙ up(h): (B, T, f).</summary>
    internal Tensor Gated(Tensor h) => Ops.SwiGlu(Ops.Project(gate_proj, h), Ops.Project(up_proj, h));

    internal Tensor Down(Tensor gated) => Ops.Project(down_proj, gated);
}

/// <summary>A pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x)).</summary>
internal sealed class Block : nn.Module
{
    private readonly RmsNorm input_layernorm;
    private readonly Attention self_attn;
    private readonly RmsNorm post_attention_layernorm;
    private readonly Mlp mlp;

    public Block(RmsNorm inputNorm, Attention attention, RmsNorm postAttentionNorm, Mlp mlp) : base(nameof(Block))
    {
        input_layernorm = inputNorm;
        self_attn = attention;
        post_attention_layernorm = postAttentionNorm;
        this.mlp = mlp;
        RegisterComponents();
    }

    internal RmsNorm InputNorm => input_layernorm;
    internal Attention SelfAttention => self_attn;
    internal RmsNorm PostAttentionNorm => post_attention_layernorm;
    internal Mlp FeedForward => mlp;

    internal Tensor Forward(Tensor x, Rotary rope, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        x = x.Plus(self_attn.Forward(input_layernorm.call(x), rope, cache));
        return x.Plus(mlp.call(post_attention_layernorm.call(x))).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="Forward"/> without a cache, keeping what the block computed for the trials that share it (<see cref="BaseTrace"/>):
    /// the same operations in the same order, so the stream it returns is the same bits.
    /// </summary>
    internal (Tensor Next, BlockTrace Trace) ForwardTraced(Tensor x, Rotary rope)
    {
        using var scope = NewDisposeScope();
        var h = input_layernorm.call(x);                     // (B, T, d)
        var attended = self_attn.Attended(h, rope, null);    // (B, T, h·hs)
        var mid = x.Plus(self_attn.Output(attended));
        var hm = post_attention_layernorm.call(mid);         // (B, T, d)
        var gated = mlp.Gated(hm);                           // (B, T, f)
        var next = mid.Plus(mlp.Down(gated));
        return (next.MoveToOuterDisposeScope(),
                new BlockTrace(x, h.MoveToOuterDisposeScope(), attended.MoveToOuterDisposeScope(), hm.MoveToOuterDisposeScope(), gated.MoveToOuterDisposeScope()));
    }

    /// <summary>A block like this one with every linear replaced by <paramref name="map"/>(name, linear);
    /// norms are shared, not copied.</summary>
    internal Block MapLinears(Func<string, nn.Module<Tensor, Tensor>, nn.Module<Tensor, Tensor>> map)
    {
        var a = self_attn.Projections.ToDictionary(p => p.Name, p => map(p.Name, p.Module));
        var m = mlp.Projections.ToDictionary(p => p.Name, p => map(p.Name, p.Module));
        return new Block(input_layernorm,
            new Attention(a["q_proj"], a["k_proj"], a["v_proj"], a["o_proj"], self_attn.Heads, self_attn.KvHeads),
            post_attention_layernorm,
            new Mlp(m["gate_proj"], m["up_proj"], m["down_proj"]));
    }

    /// <summary>An independent copy with its own tensors (values equal, gradients off), on <paramref name="device"/> when given.</summary>
    internal Block DeepClone(Device? device = null)
    {
        var copy = MapLinears((_, linear) => Linears.Clone(Linears.Require(linear), device));
        return new Block(Linears.CloneNorm(input_layernorm, device), copy.self_attn,
                         Linears.CloneNorm(post_attention_layernorm, device), copy.mlp);
    }
}

/// <summary>Helpers to create and copy the plain linear maps of a base model.</summary>
internal static class Linears
{
    public static Linear FromTensors(Tensor weight, Tensor? bias)
    {
        var linear = nn.Linear(weight.shape[1], weight.shape[0], hasBias: bias is not null);
        linear.weight = new Parameter(weight);
        if (bias is not null) linear.bias = new Parameter(bias);
        return linear;
    }

    public static Linear Clone(Linear linear, Device? device = null)
        => FromTensors(Copy(linear.weight!, device), linear.bias is null ? null : Copy(linear.bias, device));

    public static RmsNorm CloneNorm(RmsNorm norm, Device? device = null) => new(new Parameter(Copy(norm.Weight, device)), norm.Eps);

    /// <summary>
    /// A tensor's own copy in fp32: on its device, or on <paramref name="device"/> when given (copied there directly, one tensor at a
    /// time). From a base resident in bf16 (<see cref="Decoder.Reduced"/>) the copy is that base's values in fp32, as a trained copy must be.
    /// </summary>
    public static Tensor Copy(Tensor t, Device? device = null)
    {
        var copy = device is null || Ops.IsOn(t, device) ? t.detach().clone() : t.detach().to(device);
        return copy.dtype == ScalarType.Float32 ? copy : copy.to(ScalarType.Float32);
    }

    public static Linear Require(nn.Module<Tensor, Tensor> module)
        => module as Linear ?? throw new InvalidOperationException(
            $"Expected a plain linear layer, found {module.GetType().Name}: expansions and adapters apply to a base model, not to an already adapted one.");
}
