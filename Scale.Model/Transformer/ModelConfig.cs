using System.Text.Json.Serialization;

namespace Scale.Model.Transformer;

/// <summary>
/// The shape of a LLaMA-style decoder. Field names follow Hugging Face's LlamaConfig so that a
/// base model's config.json is readable by both Scale and HF tooling.
/// </summary>
internal sealed record ModelConfig
{
    /// <summary>Token vocabulary size V.</summary>
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 512;

    /// <summary>Residual width d.</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 256;

    /// <summary>Number of decoder blocks L.</summary>
    [JsonPropertyName("num_hidden_layers")] public int NumLayers { get; init; } = 4;

    /// <summary>Query heads h.</summary>
    [JsonPropertyName("num_attention_heads")] public int NumHeads { get; init; } = 4;

    /// <summary>Key/value heads for grouped-query attention; null means h (plain multi-head attention).</summary>
    [JsonPropertyName("num_key_value_heads")] public int? NumKvHeadsOrNull { get; init; }

    /// <summary>Head size d_h; null means d / h.</summary>
    [JsonPropertyName("head_dim")] public int? HeadDimOrNull { get; init; }

    /// <summary>SwiGLU feed-forward width f.</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 688;

    /// <summary>Rotary base θ.</summary>
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000.0;

    /// <summary>RMSNorm ε.</summary>
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-5;

    /// <summary>LM head shares the embedding matrix.</summary>
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }

    /// <summary>Bias on the q, k, v projections (Qwen2 has them; Llama and Mistral do not).</summary>
    [JsonPropertyName("attention_bias")] public bool AttentionBias { get; init; }

    /// <summary>Longest position the model was trained for; informational, rotary tables are computed on demand.</summary>
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 2048;

    /// <summary>Llama 3.1+'s rotary frequency scaling (config.json's rope_scaling); null: plain rotary positions.</summary>
    [JsonPropertyName("rope_scaling"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>
    /// Mistral's sliding attention window: Scale computes full causal attention, which equals windowed attention only
    /// for sequences of at most this many tokens, so longer ones are refused. Null: no window.
    /// </summary>
    [JsonPropertyName("sliding_window"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? SlidingWindow { get; init; }

    [JsonIgnore] public int NumKvHeads => NumKvHeadsOrNull ?? NumHeads;
    [JsonIgnore] public int HeadDim => HeadDimOrNull ?? (NumHeads > 0 ? HiddenSize / NumHeads : 0);
    [JsonIgnore] public int QueryWidth => NumHeads * HeadDim;
    [JsonIgnore] public int KvWidth => NumKvHeads * HeadDim;
    [JsonIgnore] public int KvGroups => NumHeads / NumKvHeads;

    /// <summary>
    /// The widest a hidden, feed-forward or attention dimension may be: far above any published model (the largest are
    /// near 2^16), low enough that the expansions' 1.5 to 2 times wider blocks and their products stay exact in 32 bits.
    /// </summary>
    public const int MaxWidth = 1 << 20;
    /// <summary>The most layers or heads a configuration may name (published models have at most a few hundred).</summary>
    public const int MaxCount = 1 << 14;
    /// <summary>The largest vocabulary a configuration may name (published tokenizers stay under 2^18).</summary>
    public const int MaxVocab = 1 << 24;

    /// <summary>Checks every field and every combination; throws naming the field at fault.</summary>
    public ModelConfig Validate()
    {
        Require(VocabSize <= MaxVocab, "vocab_size", $"{VocabSize:N0} is above {MaxVocab:N0}");
        Require(HiddenSize <= MaxWidth, "hidden_size", $"{HiddenSize:N0} is above {MaxWidth:N0}");
        Require(IntermediateSize <= MaxWidth, "intermediate_size", $"{IntermediateSize:N0} is above {MaxWidth:N0}");
        Require(NumLayers <= MaxCount, "num_hidden_layers", $"{NumLayers:N0} is above {MaxCount:N0}");
        Require(NumHeads <= MaxCount, "num_attention_heads", $"{NumHeads:N0} is above {MaxCount:N0}");
        Require(NumKvHeads <= MaxCount, "num_key_value_heads", $"{NumKvHeads:N0} is above {MaxCount:N0}");
        Require(HeadDimOrNull is null or <= MaxWidth, "head_dim", $"{HeadDimOrNull:N0} is above {MaxWidth:N0}");
        Require((long)NumHeads * HeadDim <= MaxWidth, "num_attention_heads",
            $"{NumHeads} heads of {HeadDim} make a query width of {(long)NumHeads * HeadDim:N0}, above {MaxWidth:N0}");
        Require(VocabSize > 0, "vocab_size", $"must be positive, got {VocabSize}");
        Require(HiddenSize > 0, "hidden_size", $"must be positive, got {HiddenSize}");
        Require(NumLayers > 0, "num_hidden_layers", $"must be at least 1, got {NumLayers}");
        Require(NumHeads > 0, "num_attention_heads", $"must be at least 1, got {NumHeads}");
        Require(IntermediateSize > 0, "intermediate_size", $"must be positive, got {IntermediateSize}");
        Require(RmsNormEps > 0, "rms_norm_eps", $"must be positive, got {RmsNormEps}");
        Require(RopeTheta > 0, "rope_theta", $"must be positive, got {RopeTheta}");
        if (HeadDimOrNull is { } headDim)
            Require(headDim > 0 && headDim % 2 == 0, "head_dim", $"must be positive and even (rotary pairs), got {headDim}");
        else
            Require(HiddenSize % NumHeads == 0, "num_attention_heads",
                $"{NumHeads} heads do not divide hidden_size {HiddenSize}; set head_dim or change the head count");
        Require(HeadDim % 2 == 0, "head_dim", $"head size {HeadDim} must be even for rotary positions");
        Require(NumKvHeads > 0, "num_key_value_heads", $"must be at least 1, got {NumKvHeads}");
        Require(NumHeads % NumKvHeads == 0, "num_key_value_heads",
            $"{NumKvHeads} key/value heads do not divide {NumHeads} query heads");
        Require(SlidingWindow is null or > 0, "sliding_window", $"must be positive, got {SlidingWindow}");
        RopeScaling?.Validate();
        return this;
    }

    private static void Require(bool ok, string field, string reason)
    {
        if (!ok) throw new InvalidModelConfigException(field, reason);
    }
}

/// <summary>
/// Rotary frequency scaling, as Hugging Face defines it. "llama3" (Llama 3.1 and 3.2) keeps the high frequencies,
/// divides the low ones by <see cref="Factor"/> and blends the band between; "linear" divides every frequency by it.
/// </summary>
internal sealed record RopeScaling
{
    public const string Llama3 = "llama3";
    public const string Linear = "linear";

    [JsonPropertyName("rope_type")] public string RopeType { get; init; } = Llama3;
    [JsonPropertyName("factor")] public double Factor { get; init; } = 8;
    [JsonPropertyName("low_freq_factor")] public double LowFreqFactor { get; init; } = 1;
    [JsonPropertyName("high_freq_factor")] public double HighFreqFactor { get; init; } = 4;
    [JsonPropertyName("original_max_position_embeddings")] public int OriginalMaxPositionEmbeddings { get; init; } = 8192;

    public RopeScaling Validate()
    {
        if (RopeType is not (Llama3 or Linear))
            throw new InvalidModelConfigException("rope_scaling.rope_type", $"'{RopeType}' is not supported (Scale computes llama3 and linear)");
        if (!(Factor > 0)) throw new InvalidModelConfigException("rope_scaling.factor", $"must be positive, got {Factor}");
        if (RopeType == Llama3)
        {
            if (!(LowFreqFactor > 0) || !(HighFreqFactor > LowFreqFactor))
                throw new InvalidModelConfigException("rope_scaling.high_freq_factor",
                    $"must be above low_freq_factor, both positive (got low {LowFreqFactor}, high {HighFreqFactor})");
            if (OriginalMaxPositionEmbeddings < 1)
                throw new InvalidModelConfigException("rope_scaling.original_max_position_embeddings", $"must be positive, got {OriginalMaxPositionEmbeddings}");
        }
        return this;
    }

    /// <summary>The scaled inverse frequency of one rotary pair whose unscaled inverse frequency is <paramref name="inverse"/>.</summary>
    public double Scale(double inverse)
    {
        if (RopeType == Linear) return inverse / Factor;
        double wavelength = 2 * Math.PI / inverse;
        double lowWavelength = OriginalMaxPositionEmbeddings / LowFreqFactor, highWavelength = OriginalMaxPositionEmbeddings / HighFreqFactor;
        if (wavelength < highWavelength) return inverse;             // high frequencies: unchanged
        if (wavelength > lowWavelength) return inverse / Factor;     // low frequencies: stretched by the factor
        double smooth = (OriginalMaxPositionEmbeddings / wavelength - LowFreqFactor) / (HighFreqFactor - LowFreqFactor);
        return (1 - smooth) * inverse / Factor + smooth * inverse;   // the band between: a blend of both
    }
}

/// <summary>A model configuration that cannot be built; <see cref="Field"/> names the culprit.</summary>
internal sealed class InvalidModelConfigException(string field, string reason)
    : ArgumentException($"Invalid model config: {field} {reason}.")
{
    public string Field { get; } = field;
}
