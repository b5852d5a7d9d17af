using Scale.Model.Transformer;

namespace Scale.Model.Experiments;

/// <summary>
/// Upper bounds on an experiment's sizes, so that settings which would exhaust the machine are refused with the
/// reason before anything starts, instead of running out of memory an hour in: the vocabulary (absolute, and against
/// what the old data can teach), the population sizes, and an estimate of the memory training needs against the
/// memory this process may use. The estimates are deliberately coarse (they bound, they do not predict) and named in
/// the message so that a user can see what to lower.
/// </summary>
internal static class ExperimentLimits
{
    /// <summary>The largest vocabulary Scale trains a tokenizer for (Llama 3's has 128,256 tokens, Gemma's 262,144).</summary>
    public const int MaxVocabulary = 262_144;
    /// <summary>People per side: each is rendered `renderings` times and held in memory.</summary>
    public const int MaxPeople = 10_000_000;
    /// <summary>Renderings of each person.</summary>
    public const int MaxRenderings = 100_000;
    /// <summary>A rendered biography's bytes of text, at least (measured: 355 in English, 300 in Korean, 2026-12-01).</summary>
    public const int BiographyBytes = 300;
    /// <summary>What one rendered biography costs in memory: its text (UTF-16), its token ids, its packed windows and the prompts.</summary>
    public const int BiographyMemoryBytes = 2048;

    /// <summary>The memory this process may use: the machine's, or its container's limit.</summary>
    public static long AvailableMemory => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>
    /// Refuses an experiment that exceeds a bound, with <paramref name="concurrentTrials"/> trials training at once,
    /// against <paramref name="availableMemory"/> bytes (this process's limit when not given).
    /// </summary>
    public static void Check(ExperimentSpec spec, int concurrentTrials = 1, long? availableMemory = null)
    {
        if (spec.BaseModel is null && spec.VocabSize > MaxVocabulary)
            throw new ArgumentException($"vocab-size {spec.VocabSize:N0} is above {MaxVocabulary:N0}, the largest vocabulary Scale trains a tokenizer for.");
        foreach (var (side, data) in new[] { ("old", spec.Old), ("new", spec.New) })
        {
            if (data.IsBio && data.People > MaxPeople)
                throw new ArgumentException($"{side}.people {data.People:N0} is above {MaxPeople:N0}: each person is rendered {data.Renderings} times and held in memory.");
            if (data.IsBio && data.Renderings > MaxRenderings)
                throw new ArgumentException($"{side}.renderings {data.Renderings:N0} is above {MaxRenderings:N0}: every rendering of every person is held in memory.");
        }
        if (spec.BaseModel is null && spec.Old.IsBio)
        {
            long corpus = (long)spec.Old.People * spec.Old.Renderings * BiographyBytes;
            long teachable = 256 + corpus / 4;
            if (spec.VocabSize > teachable)
                throw new ArgumentException(
                    $"vocab-size {spec.VocabSize:N0} is more than the old data can teach: {spec.Old.People:N0} people × {spec.Old.Renderings} renderings " +
                    $"are about {corpus:N0} bytes of text, enough for about {teachable:N0} tokens (the 256 bytes and a merge per 4 bytes). " +
                    "Lower vocab-size, or add people or renderings.");
        }
        long available = availableMemory ?? AvailableMemory;
        double rendered = DataBytes(spec), training = TrainingBytes(spec, Math.Max(1, concurrentTrials));
        if (rendered + training > available)
            throw new ArgumentException(
                $"this experiment needs about {Gib(rendered + training)} of memory ({Gib(rendered)} of data, {Gib(training)} for the base and " +
                $"{Math.Max(1, concurrentTrials)} trial(s) training at once), more than the {Gib(available)} this process may use. " +
                "Lower people or renderings, the batch or the sequence length, or max-concurrent.");
    }

    /// <summary>
    /// The rendered biographies of both sides in memory (text data is read from disk or memory-mapped shards: not counted).
    /// The estimates are in doubles: sizes a user may type multiply past 64 bits, and a wrapped product would pass the check.
    /// </summary>
    public static double DataBytes(ExperimentSpec spec)
        => new[] { spec.Old, spec.New }.Where(d => d.IsBio).Sum(d => (double)d.People * d.Renderings * BiographyMemoryBytes)
           * (spec.TokenizerCoversNew ? 2 : 1);

    /// <summary>
    /// The frozen base once, and for each trial training at once the worst method's share: a private copy with gradients
    /// and two AdamW moments (full fine-tuning, 16 bytes a parameter), and the activations autograd keeps for the larger of
    /// the two phases' batches, 1.5 times the base's width for the expansions.
    /// </summary>
    public static double TrainingBytes(ExperimentSpec spec, int concurrentTrials)
    {
        var m = spec.Model with { VocabSize = spec.BaseModel is null ? spec.VocabSize : spec.Model.VocabSize };
        double parameters = ParameterCount(m);
        double perTrial = 16 * parameters + new[] { spec.Pretrain, spec.Continual }.Max(p => ActivationBytes(m, p));
        return 4 * parameters + concurrentTrials * perTrial;
    }

    /// <summary>Activations kept for the backward pass of one step, in fp32, with the expansions' 1.5 × width.</summary>
    public static double ActivationBytes(ModelConfig m, PhaseSpec phase)
    {
        double hidden = 1.5 * m.HiddenSize, ffn = 1.5 * m.IntermediateSize, heads = 1.5 * m.NumHeads;
        double perTokenPerLayer = 20 * hidden + 8 * ffn + 2 * heads * phase.SequenceLength;
        double perToken = m.NumLayers * perTokenPerLayer + 3.0 * m.VocabSize;
        return 4.0 * phase.Batch * phase.SequenceLength * perToken;
    }

    private static double ParameterCount(ModelConfig m)
    {
        double d = m.HiddenSize, f = m.IntermediateSize, layers = m.NumLayers, v = m.VocabSize;
        double kv = (double)m.NumKvHeads * m.HeadDim, q = (double)m.NumHeads * m.HeadDim;
        double block = d * q + 2 * d * kv + q * d + 3 * d * f + 2 * d;
        return v * d * (m.TieWordEmbeddings ? 1 : 2) + layers * block + d;
    }

    private static string Gib(double bytes) => bytes >= 1L << 30 ? $"{bytes / (1L << 30):#,0.0} GiB" : $"{bytes / (1L << 20):0} MiB";
}
