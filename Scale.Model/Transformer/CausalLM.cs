using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Scale.Model.Transformer;

/// <summary>
/// Anything that maps tokens (B, T) to next-token logits (B, T, V): the base decoder and every
/// variant built on it (SCALE, depth expansion, LoRA).
/// </summary>
internal abstract class CausalLM : nn.Module<Tensor, Tensor>
{
    protected CausalLM(string name, ModelConfig config) : base(name) => Config = config;

    /// <summary>The base configuration this model was built from (vocabulary, heads, rotary).</summary>
    public ModelConfig Config { get; }

    /// <summary>Where the model's tensors live (the CPU for a model without parameters).</summary>
    public virtual Device Device => parameters().FirstOrDefault()?.device ?? CPU;

    /// <summary>Logits (B, T, V) for tokens at positions cache.Length …; appends keys and values to the cache.</summary>
    public abstract Tensor Forward(Tensor tokens, DecodeCache? cache);

    public override Tensor forward(Tensor tokens) => Forward(tokens, null);

    /// <summary>Logits plus any term the method adds to the LM loss (SCALE-Route's gate penalty).</summary>
    public virtual (Tensor Logits, Tensor? Auxiliary) ForwardForTraining(Tensor tokens) => (Forward(tokens, null), null);

    /// <summary>
    /// As <see cref="ForwardForTraining(Tensor)"/>, taking the frozen base's part of the pass from <paramref name="trace"/>
    /// (computed on the same tokens) where the method's original stream is the base's. Only methods that say so with
    /// <see cref="TraceDepth"/> &gt; 0 accept a trace; the logits are the same bits as without it.
    /// </summary>
    public virtual (Tensor Logits, Tensor? Auxiliary) ForwardForTraining(Tensor tokens, BaseTrace trace)
        => throw new NotSupportedException($"{GetType().Name} does not share the frozen base's forward pass.");

    /// <summary>How many of the base's blocks this model's training pass can take from a <see cref="BaseTrace"/> (0: none, it computes its own).</summary>
    public virtual int TraceDepth => 0;

    /// <summary>Whether <see cref="Forward"/> can decode step by step with a KV cache (a routed model needs the whole context).</summary>
    public virtual bool SupportsCache => true;

    /// <summary>Every distinct parameter with its first name (tied weights are listed once).</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> DistinctParameters()
    {
        var seen = new HashSet<IntPtr>();
        var result = new List<(string, Parameter)>();
        foreach (var (name, parameter) in named_parameters())
            if (seen.Add(parameter.Handle)) result.Add((name, parameter));
        return result;
    }

    /// <summary>The parameters an optimiser updates, by name.</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters()
        => DistinctParameters().Where(p => p.Parameter.requires_grad).ToList();

    public long ParameterCount() => DistinctParameters().Sum(p => p.Parameter.numel());
    public long TrainableParameterCount() => TrainableParameters().Sum(p => p.Parameter.numel());

    private protected Rotary RotaryFor(long start, long length, Device device)
    {
        if (Config.SlidingWindow is { } window && start + length > window)
            throw new ArgumentException($"a sequence of {start + length} tokens is longer than the model's sliding attention window of {window} " +
                                        "(config.json sliding_window): Scale computes full causal attention, which equals the window's only up to " +
                                        $"{window} tokens; use sequences of at most {window}.");
        return new(Config.HeadDim, Config.RopeTheta, start, length, device, Config.RopeScaling);
    }
}

/// <summary>The LLaMA-style base decoder: embed, L pre-norm blocks, final RMSNorm, LM head.</summary>
internal sealed class Decoder : CausalLM
{
    private readonly TokenEmbedding embed_tokens;   // (V, d)
    private readonly ModuleList<Block> layers;
    private readonly RmsNorm norm;
    private readonly Linear? lm_head;               // (V, d); null when tied to the embedding

    internal Decoder(ModelConfig config, TokenEmbedding embedding, IEnumerable<Block> blocks, RmsNorm finalNorm, Linear? head)
        : base(nameof(Decoder), config)
    {
        if (config.TieWordEmbeddings != (head is null))
            throw new ArgumentException("An LM head must be given exactly when the embeddings are not tied.");
        embed_tokens = embedding;
        layers = nn.ModuleList(blocks.ToArray());
        norm = finalNorm;
        lm_head = head;
        RegisterComponents();
    }

    /// <summary>A freshly initialised decoder (normal(0, 0.02) weights, zero biases, unit norm gains),
    /// deterministic in the seed.</summary>
    public static Decoder Create(ModelConfig config, long seed = 0)
    {
        config.Validate();
        var g = new Generator((ulong)seed);
        var tensors = TensorLayout.Of(config).ToDictionary(t => t.Name, t => t.Role switch
        {
            TensorRole.Gain => torch.ones(t.Shape),
            TensorRole.Bias => torch.zeros(t.Shape),
            _ => Ops.Normal(t.Shape, 0.02, g),
        });
        return FromTensors(config, tensors);
    }

    /// <summary>
    /// Builds a decoder around the given tensors (named as <see cref="TensorLayout"/> lists them, HF's names without
    /// the "model." prefix). Missing, extra or mis-shaped tensors are rejected together, by name.
    /// </summary>
    public static Decoder FromTensors(ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors)
    {
        config.Validate();
        TensorLayout.Check(config, tensors);
        Parameter P(string name) => new(tensors[name].to(ScalarType.Float32).contiguous(), requires_grad: false);
        Linear L(string name) => Linears.FromTensors(P(name + ".weight"), tensors.ContainsKey(name + ".bias") ? P(name + ".bias") : null);
        var embedding = new TokenEmbedding(P("embed_tokens.weight"));
        var blocks = Enumerable.Range(0, config.NumLayers).Select(i =>
        {
            var at = $"layers.{i}";
            return new Block(
                new RmsNorm(P($"{at}.input_layernorm.weight"), config.RmsNormEps),
                new Attention(L($"{at}.self_attn.q_proj"), L($"{at}.self_attn.k_proj"), L($"{at}.self_attn.v_proj"),
                              L($"{at}.self_attn.o_proj"), config.NumHeads, config.NumKvHeads),
                new RmsNorm(P($"{at}.post_attention_layernorm.weight"), config.RmsNormEps),
                new Mlp(L($"{at}.mlp.gate_proj"), L($"{at}.mlp.up_proj"), L($"{at}.mlp.down_proj")));
        }).ToList();
        var head = config.TieWordEmbeddings ? null : L("lm_head");
        return new Decoder(config, embedding, blocks, new RmsNorm(P("norm.weight"), config.RmsNormEps), head);
    }

    /// <summary>Every tensor by its checkpoint name (tied heads appear once, as the embedding).</summary>
    public Dictionary<string, Tensor> StateTensors()
        => DistinctParameters().ToDictionary(p => p.Name, p => (Tensor)p.Parameter);

    internal TokenEmbedding Embedding => embed_tokens;
    internal IReadOnlyList<Block> Blocks => layers.ToList();
    internal RmsNorm FinalNorm => norm;
    /// <summary>The LM head's weight (V, d): the embedding when tied.</summary>
    internal Parameter HeadWeight => lm_head?.weight ?? embed_tokens.Weight;

    public override Tensor Forward(Tensor tokens, DecodeCache? cache)
    {
        using var scope = NewDisposeScope();
        var x = RunBlocks(tokens, cache, null);
        return Head(x).MoveToOuterDisposeScope();
    }

    /// <summary>The residual stream after the embedding and after each block: L + 1 tensors (B, T, d).</summary>
    public IReadOnlyList<Tensor> HiddenStates(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var states = new List<Tensor>();
        RunBlocks(tokens, null, states);
        return states.Select(s => s.MoveToOuterDisposeScope()).ToList();
    }

    private Tensor RunBlocks(Tensor tokens, DecodeCache? cache, List<Tensor>? states)
    {
        long start = cache?.Length ?? 0;
        var rope = RotaryFor(start, tokens.shape[1], tokens.device);
        var x = embed_tokens.call(tokens);                 // (B, T, d)
        states?.Add(x);
        for (int i = 0; i < layers.Count; i++)
        {
            x = layers[i].Forward(x, rope, cache?.Slot(i));
            states?.Add(x);
        }
        cache?.Advance(tokens.shape[1]);
        return x;
    }

    /// <summary>
    /// The base's forward over <paramref name="tokens"/> (B, T) without autograd, kept for the trials that share it: the
    /// lowest <paramref name="depth"/> blocks traced (<see cref="BaseTrace"/>); with every block, the final norm and the
    /// base's logits too. The tokens are copied into the trace, so it does not depend on the caller's batch.
    /// </summary>
    public BaseTrace Trace(Tensor tokens, int depth)
    {
        if (depth < 0 || depth > layers.Count) throw new ArgumentOutOfRangeException(nameof(depth), $"must be 0..{layers.Count}, got {depth}");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var rope = RotaryFor(0, tokens.shape[1], tokens.device);
        var x = embed_tokens.call(tokens);                 // (B, T, d)
        var blocks = new List<BlockTrace>();
        for (int i = 0; i < depth; i++)
        {
            (var next, var trace) = layers[i].ForwardTraced(x, rope);
            blocks.Add(trace);
            x = next;
        }
        Tensor? finalInput = null, logits = null;
        if (depth == layers.Count)
        {
            finalInput = norm.call(x);
            logits = Ops.Linear(finalInput, HeadWeight);   // as a SCALE head computes H·norm(x): before any cast to fp32
        }
        return new BaseTrace(tokens.clone(), blocks, x, finalInput, logits);
    }

    /// <summary>Logits from the residual stream <paramref name="x"/> before block <paramref name="fromLayer"/>: the blocks from there on, the final norm and the head.</summary>
    internal Tensor ContinueFrom(Tensor x, int fromLayer, Rotary rope)
    {
        using var scope = NewDisposeScope();
        for (int i = fromLayer; i < layers.Count; i++) x = layers[i].Forward(x, rope, null);
        return Head(x).MoveToOuterDisposeScope();
    }

    private Tensor Head(Tensor x)
    {
        var h = norm.call(x);
        return Ops.FullPrecision(lm_head is null ? Ops.Linear(h, embed_tokens.Weight) : Ops.Project(lm_head, h));   // (B, T, V)
    }

    /// <summary>Marks every parameter frozen: a base shared by variants never trains.</summary>
    public Decoder Freeze()
    {
        foreach (var p in parameters()) p.requires_grad = false;
        return this;
    }

    /// <summary>An independent copy of every tensor (for full fine-tuning, which must not touch a shared base), on <paramref name="device"/> when given.</summary>
    public Decoder DeepClone(Device? device = null)
    {
        var embedding = new TokenEmbedding(new Parameter(Linears.Copy(embed_tokens.Weight, device)));
        return new Decoder(Config, embedding, layers.Select(b => b.DeepClone(device)), Linears.CloneNorm(norm, device),
                           lm_head is null ? null : Linears.Clone(lm_head, device));
    }

    /// <summary>
    /// This frozen base on <paramref name="device"/>: itself when it lives there, else a frozen copy made there (a trainer's
    /// resident base: one per device, shared by every trial that device trains).
    /// </summary>
    public Decoder On(Device device) => Ops.IsOn(embed_tokens.Weight, device) ? this : DeepClone(device).Freeze();

    /// <summary>
    /// This frozen base with its matrices — the embedding, every linear map, the head — held in <paramref name="type"/> (bf16), the
    /// norm gains in fp32: a base resident once per device for mixed precision, at half the memory, that no step casts again
    /// (<see cref="Ops.Linear"/> takes it as it is). Only for use under <see cref="Autocast"/> with that type. Copies made from it
    /// for training (full fine-tuning, Freeze, depth expansion) are fp32 again.
    /// </summary>
    public Decoder Reduced(ScalarType type)
    {
        Parameter P(Tensor t) => new(t.detach().to(type), requires_grad: false);
        Linear L(Linear linear) => Linears.FromTensors(P(linear.weight!), linear.bias is null ? null : P(linear.bias));
        var embedding = new TokenEmbedding(P(embed_tokens.Weight));
        var blocks = layers.Select(b =>
        {
            var mapped = b.MapLinears((_, linear) => L(Linears.Require(linear)));
            return new Block(Linears.CloneNorm(b.InputNorm), mapped.SelfAttention, Linears.CloneNorm(b.PostAttentionNorm), mapped.FeedForward);
        }).ToList();
        return new Decoder(Config, embedding, blocks, Linears.CloneNorm(norm), lm_head is null ? null : L(lm_head)).Freeze();   // nothing shared: it outlives its source
    }

    /// <summary>A decoder that shares this one's embedding, norms and head, with a different list of blocks.</summary>
    internal Decoder WithBlocks(IEnumerable<Block> blocks, ModelConfig? config = null)
        => new(config ?? Config, embed_tokens, blocks, norm, lm_head);
}
