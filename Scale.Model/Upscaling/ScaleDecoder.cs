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
        weight_u = new Parameter(Ops.Place(Ops.Normal([baseWeight.shape[0], widthUp], initScale, g), baseWeight.device), train);
        RegisterComponents();
    }

    public (Tensor X, Tensor XUp) Forward(Tensor tokens)
        => (TokenEmbedding.Lookup(weight, tokens), TokenEmbedding.Lookup(weight_u, tokens));   // (B, T, d), (B, T, d_u)
}

/// <summary>logits = H·norm(x) + H_u·norm_u(x_u); H_u starts at zero.</summary>
internal sealed class ScaleHead : nn.Module
{
    private readonly Parameter weight;     // H   (V, d)   frozen, the base's (its embedding when tied)
    private readonly Parameter weight_u;   // H_u (V, d_u) zero at init; never tied, or it would start non-zero

    public ScaleHead(Parameter baseWeight, long widthUp, bool train) : base(nameof(ScaleHead))
    {
        weight = baseWeight;
        weight_u = new Parameter(torch.zeros(baseWeight.shape[0], widthUp, device: baseWeight.device), train);
        RegisterComponents();
    }

    public Tensor Forward(Tensor h, Tensor hu) => Ops.FullPrecision(Ops.Linear(h, weight).Plus(Ops.Linear(hu, weight_u)));   // (B, T, V)

    /// <summary>The full logits from the base's own H·norm(x) (a <see cref="BaseTrace"/>'s) and the new part: the same bits as <see cref="Forward"/>.</summary>
    public Tensor FromBase(Tensor baseLogits, Tensor hu) => Ops.FullPrecision(baseLogits.Plus(Ops.Linear(hu, weight_u)));

    /// <summary>H·norm(x) alone: the base's logits when x is the base's stream.</summary>
    public Tensor Original(Tensor h) => Ops.FullPrecision(Ops.Linear(h, weight));                           // (B, T, V)
}

/// <summary>The frozen base itself, for the preservation head's continuation above the first W12 (a plain holder, so the
/// base's modules are not registered a second time under the upscaled model).</summary>
internal sealed class BaseStream(Decoder baseModel)
{
    public Decoder Model { get; } = baseModel;
}

/// <summary>
/// A base decoder widened by SCALE (docs/method.md) around the base's own, frozen tensors. With every W12
/// absent (Preserve) the original stream is the base's, bit for bit, and needs no autograd.
/// Its plain output is the full upscaled model's logits — the adaptation head. With a <see cref="Routing"/> rule
/// (SCALE-Route) it answers each token from the preservation head (the base's logits: the original stream computed
/// without any W12 term) or the adaptation head, both from one pass.
/// </summary>
internal sealed class ScaleDecoder : CausalLM
{
    private readonly ScaleEmbedding embed_tokens;
    private readonly ModuleList<ScaleBlock> layers;
    private readonly SplitRmsNorm norm;
    private readonly ScaleHead lm_head;
    private readonly BaseStream baseStream;

    private ScaleDecoder(ModelConfig config, ExpansionSpec spec, ScaleEmbedding embedding, IEnumerable<ScaleBlock> blocks,
                         SplitRmsNorm finalNorm, ScaleHead head, BaseStream baseStream) : base(nameof(ScaleDecoder), config)
    {
        Expansion = spec;
        embed_tokens = embedding;
        layers = nn.ModuleList(blocks.ToArray());
        norm = finalNorm;
        lm_head = head;
        this.baseStream = baseStream;
        Routing = spec.Routing;
        RegisterComponents();
    }

    /// <summary>The expansion this model was built with.</summary>
    public ExpansionSpec Expansion { get; }

    /// <summary>
    /// SCALE-Route's rule; null: the model answers with the adaptation head. Settable, so that any trained Adapt or
    /// Preserve expansion can be scored under a rule without training again (routing changes no weight).
    /// </summary>
    public RoutingSpec? Routing { get; set; }

    /// <summary>The first block with a W12 (the number of blocks when none has one): below it the original stream is the base's.</summary>
    public int FirstAdaptedLayer
    {
        get
        {
            for (int i = 0; i < layers.Count; i++)
                if (layers[i].HasW12) return i;
            return layers.Count;
        }
    }

    /// <summary>Blocks run so far: the upscaled model's and the base's (for the preservation head) — how tests see one pass.</summary>
    internal long UpscaledBlockCalls { get; private set; }
    internal long BaseBlockCalls { get; private set; }

    public override bool SupportsCache => Routing is null;

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
                   spec.Trains(ExpansionBlock.W22, module, layer)), init, spec.Init, g);

        var embedding = new ScaleEmbedding(baseModel.Embedding.Weight, du, spec.Trains(ExpansionBlock.EmbedUp, "embed_tokens", null), init, g);
        var blocks = baseModel.Blocks.Select((block, i) =>
        {
            var p = block.SelfAttention.Projections.Concat(block.FeedForward.Projections).ToDictionary(x => x.Name, x => x.Module);
            return new ScaleBlock(
                new SplitRmsNorm(block.InputNorm, du, spec.Trains(ExpansionBlock.NormUp, "input_layernorm", i)),
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
        return new ScaleDecoder(config, spec, embedding, blocks, finalNorm, head, new BaseStream(baseModel));
    }

    /// <summary>The adaptation head's logits, or with a <see cref="Routing"/> rule the routed logits.</summary>
    public override Tensor Forward(Tensor tokens, DecodeCache? cache)
    {
        using var scope = NewDisposeScope();
        if (Routing is null) return Run(tokens, cache, null).MoveToOuterDisposeScope();
        if (cache is not null) throw new NotSupportedException("SCALE-Route routes on the whole context: decode it without a KV cache.");
        var (preservation, adaptation) = Heads(tokens);
        return Upscaling.Routing.Route(Routing, preservation, adaptation, tokens).MoveToOuterDisposeScope();
    }

    /// <summary>Training minimises the adaptation head's loss, routed or not (a rule inside the loss would make the zero
    /// initialisation a fixed point: at step 0 both heads agree everywhere and no gradient would reach the expansion).</summary>
    public override (Tensor Logits, Tensor? Auxiliary) ForwardForTraining(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        if (Expansion.RouteInLoss && Routing is { } rule)
        {
            var (preservation, adaptation) = Heads(tokens);
            return (Upscaling.Routing.Route(rule, preservation, adaptation, tokens).MoveToOuterDisposeScope(), null);
        }
        return (Run(tokens, null, null).MoveToOuterDisposeScope(), null);
    }

    /// <summary>Below its first W12 this model's original stream is the base's: a lock-step group's trace can give it (not when it trains on its routed output).</summary>
    public override int TraceDepth => Expansion.RouteInLoss ? 0 : FirstAdaptedLayer;

    /// <summary>
    /// The adaptation head's logits with the base's part of the pass from <paramref name="trace"/> (traced on the same tokens):
    /// the blocks below the first W12 compute only their upscaled stream, on the base's values; from the first W12 on, the
    /// blocks run whole from the base's stream there. The same operations as <see cref="Run"/> on the same inputs: the same bits.
    /// </summary>
    public override (Tensor Logits, Tensor? Auxiliary) ForwardForTraining(Tensor tokens, BaseTrace trace)
    {
        int first = FirstAdaptedLayer;
        if (trace.Depth < Math.Min(first, layers.Count) || (first == layers.Count && trace.Logits is null))
            throw new ArgumentException($"the base's trace covers {trace.Depth} blocks; this model takes {first} from it.");
        using var scope = NewDisposeScope();
        var rope = RotaryFor(0, tokens.shape[1], tokens.device);
        var (_, xu) = embed_tokens.Forward(tokens);                     // the base's x is the trace's
        for (int i = 0; i < first; i++)
        {
            xu = layers[i].ForwardUp(trace.Blocks[i], xu, rope);
            UpscaledBlockCalls++;
        }
        Tensor logits;
        if (first == layers.Count) logits = lm_head.FromBase(trace.Logits!, norm.ForwardUp(xu));
        else
        {
            var x = trace.StreamAt(first);
            for (int i = first; i < layers.Count; i++)
            {
                (x, xu) = layers[i].Forward(x, xu, rope, null, null);
                UpscaledBlockCalls++;
            }
            var (h, hu) = norm.Forward(x, xu);
            logits = lm_head.Forward(h, hu);
        }
        return (logits.MoveToOuterDisposeScope(), null);
    }

    /// <summary>
    /// Both heads from one pass: the blocks below the first W12 run once for both (there the original stream is the
    /// base's); above it the upscaled blocks go on for the adaptation head while the base's own frozen blocks, without
    /// autograd, carry the original stream to the preservation head. (B, T, V) each.
    /// </summary>
    public (Tensor Preservation, Tensor Adaptation) Heads(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var rope = RotaryFor(0, tokens.shape[1], tokens.device);
        int first = FirstAdaptedLayer;
        var (x, xu) = embed_tokens.Forward(tokens);                     // (B, T, d), (B, T, d_u)
        Tensor? shared = null;
        for (int i = 0; i < layers.Count; i++)
        {
            if (i == first) shared = x;                                 // the base's hidden state before block `first`
            (x, xu) = layers[i].Forward(x, xu, rope, null, null);
            UpscaledBlockCalls++;
        }
        var (h, hu) = norm.Forward(x, xu);
        var adaptation = lm_head.Forward(h, hu);
        Tensor preservation;
        using (no_grad())
        {
            if (shared is null) preservation = lm_head.Original(h);    // no W12 anywhere: the original stream is the base's to the end
            else
            {
                preservation = baseStream.Model.ContinueFrom(shared.detach(), first, rope);
                BaseBlockCalls += layers.Count - first;
            }
        }
        return (preservation.MoveToOuterDisposeScope(), adaptation.MoveToOuterDisposeScope());
    }

    /// <summary>The original stream x after the embedding and after each block: L + 1 tensors (B, T, d).</summary>
    public IReadOnlyList<Tensor> OriginalStreamStates(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var states = new List<Tensor>();
        Run(tokens, null, states);
        return states.Select(s => s.MoveToOuterDisposeScope()).ToList();
    }

    private Tensor Run(Tensor tokens, DecodeCache? cache, List<Tensor>? states)
    {
        var rope = RotaryFor(cache?.Length ?? 0, tokens.shape[1], tokens.device);
        var (x, xu) = embed_tokens.Forward(tokens);                     // (B, T, d), (B, T, d_u)
        states?.Add(x);
        for (int i = 0; i < layers.Count; i++)
        {
            (x, xu) = layers[i].Forward(x, xu, rope, cache?.Slot(2 * i), cache?.Slot(2 * i + 1));
            UpscaledBlockCalls++;
            states?.Add(x);
        }
        cache?.Advance(tokens.shape[1]);
        var (h, hu) = norm.Forward(x, xu);
        return lm_head.Forward(h, hu);                                  // (B, T, V)
    }
}
