using Scale.Model.Transformer;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Scale.Model.Upscaling;

/// <summary>New embedding columns beside the base's: token → (E[token], E_u[token]).</summary>
internal sealed class ScaleEmbedding : nn.Module
{
    private readonly Parameter weight;     // E   (V, d)   frozen, the base's
    private readonly Parameter weight_u;   // E_u (V, d_u)

    public ScaleEmbedding(Parameter baseWeight, long widthUp, bool train, double initScale, Generator g) : base(nameof(ScaleEmbedding))
    {
        weight = baseWeight;
        weight_u = new Parameter(Ops.Normal([baseWeight.shape[0], widthUp], initScale, g), train);
        RegisterComponents();
    }

    public (Tensor X, Tensor XUp) Forward(Tensor tokens)
        => (TokenEmbedding.Lookup(weight, tokens), TokenEmbedding.Lookup(weight_u, tokens));   // (B, T, d), (B, T, d_u)
}

/// <summary>logits = H·norm(x) + g·(H_u·norm_u(x_u)); H_u starts at zero.</summary>
internal sealed class ScaleHead : nn.Module
{
    private readonly Parameter weight;     // H   (V, d)   frozen, the base's (its embedding when tied)
    private readonly Parameter weight_u;   // H_u (V, d_u) zero at init; never tied, or it would start non-zero

    public ScaleHead(Parameter baseWeight, long widthUp, bool train) : base(nameof(ScaleHead))
    {
        weight = baseWeight;
        weight_u = new Parameter(torch.zeros(baseWeight.shape[0], widthUp), train);
        RegisterComponents();
    }

    public Tensor Forward(Tensor h, Tensor hu, Tensor? gate)
    {
        var upscaled = nn.functional.linear(hu, weight_u);
        return nn.functional.linear(h, weight).Plus(gate is null ? upscaled : gate * upscaled);   // (B, T, V)
    }
}

/// <summary>
/// A base decoder widened by SCALE (docs/method.md) around the base's own, frozen tensors. With every W12
/// absent (Preserve) the original stream is the base's, bit for bit, and needs no autograd.
/// </summary>
public sealed class ScaleDecoder : CausalLM
{
    private readonly ScaleEmbedding embed_tokens;
    private readonly ModuleList<ScaleBlock> layers;
    private readonly SplitRmsNorm norm;
    private readonly Router? head_router;
    private readonly ScaleHead lm_head;

    private ScaleDecoder(ModelConfig config, ExpansionSpec spec, ScaleEmbedding embedding, IEnumerable<ScaleBlock> blocks,
                         SplitRmsNorm finalNorm, Router? headRouter, ScaleHead head) : base(nameof(ScaleDecoder), config)
    {
        Expansion = spec;
        embed_tokens = embedding;
        layers = nn.ModuleList(blocks.ToArray());
        norm = finalNorm;
        head_router = headRouter;
        lm_head = head;
        RegisterComponents();
    }

    /// <summary>The expansion this model was built with.</summary>
    public ExpansionSpec Expansion { get; }

    /// <summary>Forces every router gate to this value (Route only): 0 reproduces the base, 1 reproduces Adapt.</summary>
    internal double? ForcedGate { get; set; }

    /// <summary>The frozen base's forward pass, when the routers read its confidence.</summary>
    private Func<Tensor, Tensor>? baseForward;

    private GateSource Gates(Tensor tokens, DecodeCache? cache, List<Tensor>? record)
    {
        if (baseForward is null || ForcedGate is not null) return new GateSource(ForcedGate, record);
        if (cache is not null)
            throw new NotSupportedException("Route with confidence-reading routers does not decode with a KV cache yet; generate without a cache.");
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var logProbs = nn.functional.log_softmax(baseForward(tokens), -1);       // (B, T, V)
        var probs = logProbs.exp();
        using var held = Scalars.Scope();
        var entropy = (probs * logProbs).sum(-1, keepdim: true).neg().div(held.Of(Math.Log(logProbs.shape[^1])));
        var top = probs.amax([-1L], keepdim: true);
        return new GateSource(null, record, torch.cat([entropy, top], -1).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Widens <paramref name="baseModel"/> as <paramref name="spec"/> says. The base is frozen and shared, not copied:
    /// many upscaled models can stand on one resident base. New tensors are drawn from <paramref name="seed"/>.
    /// </summary>
    public static ScaleDecoder Upscale(Decoder baseModel, ExpansionSpec spec, long seed = 0)
    {
        var config = baseModel.Config;
        spec.Validate(config);
        baseModel.Freeze();
        var g = new Generator((ulong)seed);
        int hs = config.HeadDim, hu = spec.HeadsUp, fu = spec.FfnUpFor(config);
        long du = (long)hu * hs;                                  // d_u = h_u·d_h
        double init = spec.InitScale;

        ScaleLinear Widen(nn.Module<Tensor, Tensor> linear, string module, int layer, long inUp, long outUp)
            => new(Linears.Require(linear), inUp, outUp, new BlockTraining(
                   spec.Trains(ExpansionBlock.W12, module, layer),
                   spec.Trains(ExpansionBlock.W21, module, layer),
                   spec.Trains(ExpansionBlock.W22, module, layer)), init, g);

        Router? RouterFor(string module, int? layer)
        {
            if (spec.Router is not { } r) return null;
            bool placed = module == "head_router" ? r.Gates != GatePlacement.Blocks : r.Gates != GatePlacement.Head;
            return placed ? new Router(config.HiddenSize, r, spec.Trains(ExpansionBlock.Router, module, layer), init, g) : null;
        }

        var embedding = new ScaleEmbedding(baseModel.Embedding.Weight, du, spec.Trains(ExpansionBlock.EmbedUp, "embed_tokens", null), init, g);
        var blocks = baseModel.Blocks.Select((block, i) =>
        {
            var p = block.SelfAttention.Projections.Concat(block.FeedForward.Projections).ToDictionary(x => x.Name, x => x.Module);
            return new ScaleBlock(
                new SplitRmsNorm(block.InputNorm, du, spec.Trains(ExpansionBlock.NormUp, "input_layernorm", i)),
                RouterFor("router", i),
                new ScaleAttention(
                    Widen(p["q_proj"], "q_proj", i, du, (long)hu * hs),
                    Widen(p["k_proj"], "k_proj", i, du, (long)hu * hs),    // each new head has its own key/value head
                    Widen(p["v_proj"], "v_proj", i, du, (long)hu * hs),
                    Widen(p["o_proj"], "o_proj", i, (long)hu * hs, du),
                    config.NumHeads, config.NumKvHeads, hu),
                new SplitRmsNorm(block.PostAttentionNorm, du, spec.Trains(ExpansionBlock.NormUp, "post_attention_layernorm", i)),
                new ScaleMlp(
                    Widen(p["gate_proj"], "gate_proj", i, du, fu),
                    Widen(p["up_proj"], "up_proj", i, du, fu),
                    Widen(p["down_proj"], "down_proj", i, fu, du)));
        }).ToList();
        var finalNorm = new SplitRmsNorm(baseModel.FinalNorm, du, spec.Trains(ExpansionBlock.NormUp, "norm", null));
        var head = new ScaleHead(baseModel.HeadWeight, du, spec.Trains(ExpansionBlock.HeadUp, "lm_head", null));
        return new ScaleDecoder(config, spec, embedding, blocks, finalNorm, RouterFor("head_router", null), head)
        {
            // A delegate, not a field of module type: the base must not be registered (its tensors are already the model's).
            baseForward = spec.Router?.Input is RouterInput.Confidence or RouterInput.Both ? tokens => baseModel.forward(tokens) : null,
        };
    }

    public override Tensor Forward(Tensor tokens, DecodeCache? cache)
    {
        using var scope = NewDisposeScope();
        return Run(tokens, cache, Gates(tokens, cache, null), null).MoveToOuterDisposeScope();
    }

    /// <summary>Logits plus Route's penalty λ·mean(g) over every gate of every token.</summary>
    public override (Tensor Logits, Tensor? Auxiliary) ForwardForTraining(Tensor tokens)
    {
        if (Expansion.Router is not { } router) return (Forward(tokens, null), null);
        using var scope = NewDisposeScope();
        var gates = new List<Tensor>();
        var logits = Run(tokens, null, Gates(tokens, null, gates), null);
        using var held = Scalars.Scope();
        var penalty = torch.stack(gates.Select(g => g.mean()).ToArray()).mean().mul(held.Of(router.Penalty));
        return (logits.MoveToOuterDisposeScope(), penalty.MoveToOuterDisposeScope());
    }

    /// <summary>Mean gate per router (blocks, then the head) on these tokens; empty unless Route.</summary>
    public IReadOnlyList<double> MeanGates(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        return GateValues(tokens).Select(g => g.mean().item<float>()).Select(v => (double)v).ToList();
    }

    /// <summary>Every router's gates (B, T, 1) on these tokens, blocks first, then the head; without autograd.</summary>
    internal IReadOnlyList<Tensor> GateValues(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var gates = new List<Tensor>();
        Run(tokens, null, Gates(tokens, null, gates), null);
        return gates.Select(g => g.MoveToOuterDisposeScope()).ToList();
    }

    /// <summary>The original stream x after the embedding and after each block: L + 1 tensors (B, T, d).</summary>
    public IReadOnlyList<Tensor> OriginalStreamStates(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var states = new List<Tensor>();
        Run(tokens, null, Gates(tokens, null, null), states);
        return states.Select(s => s.MoveToOuterDisposeScope()).ToList();
    }

    private Tensor Run(Tensor tokens, DecodeCache? cache, GateSource gates, List<Tensor>? states)
    {
        var rope = RotaryFor(cache?.Length ?? 0, tokens.shape[1], tokens.device);
        var (x, xu) = embed_tokens.Forward(tokens);                     // (B, T, d), (B, T, d_u)
        states?.Add(x);
        for (int i = 0; i < layers.Count; i++)
        {
            (x, xu) = layers[i].Forward(x, xu, rope, gates, cache?.Slot(2 * i), cache?.Slot(2 * i + 1));
            states?.Add(x);
        }
        cache?.Advance(tokens.shape[1]);
        var (h, hu) = norm.Forward(x, xu);
        return lm_head.Forward(h, hu, gates.For(head_router, h));       // (B, T, V)
    }
}
