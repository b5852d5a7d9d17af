using System.Text.Json.Serialization;
using Scale.Model.Data;
using Scale.Model.Transformer;

namespace Scale.Model.Experiments;

/// <summary>One side of an experiment: synthetic biographies, or a folder of text.</summary>
internal sealed record DataSpec
{
    /// <summary>"bio" or "text".</summary>
    public string Kind { get; init; } = "bio";
    public BioLanguage Language { get; init; } = BioLanguage.English;
    public int People { get; init; } = 200;
    public int Renderings { get; init; } = 20;
    /// <summary>Seed of the world the population is drawn from; the old and new sides of one language share a world.</summary>
    public long WorldSeed { get; init; } = 1;
    public string? Folder { get; init; }
    /// <summary>
    /// A built-in corpus (<see cref="DebianHelpCorpora.Known"/>: Debian's GIMP and LibreOffice help in English, German and Korean),
    /// read from <c>{data}/corpora/{name}</c> and prepared there on first use; instead of <see cref="Folder"/>. Left out of the
    /// JSON when null (fingerprints of earlier sweeps stay).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Corpus { get; init; }
    public double HeldOutFraction { get; init; } = 0.1;
    /// <summary>
    /// The old text side's documents set aside, besides the held-out ones, as the calibration slice of novelty-auto routing
    /// (null: <see cref="DefaultCalibrationFraction"/>). Left out of the JSON when null (fingerprints of earlier sweeps stay).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? CalibrationFraction { get; init; }

    public const double DefaultCalibrationFraction = 0.05;

    public bool IsBio => Kind == "bio";

    public DataSpec Validate(string side, bool requireFolder = true)
    {
        if (Kind is not ("bio" or "text")) throw new ArgumentException($"{side}.kind must be bio or text, got '{Kind}'.");
        if (IsBio && People < 1) throw new ArgumentException($"{side}.people must be at least 1, got {People}.");
        if (IsBio && Renderings < 1) throw new ArgumentException($"{side}.renderings must be at least 1, got {Renderings}.");
        if (Corpus is not null)
        {
            if (IsBio) throw new ArgumentException($"{side}.corpus is for text data (kind = text).");
            if (Folder is not null) throw new ArgumentException($"{side} names both a corpus and a folder: give one.");
            DebianHelpCorpora.Find(Corpus);
        }
        if (CalibrationFraction is { } calibration && (calibration < 0 || calibration + HeldOutFraction >= 1))
            throw new ArgumentException($"{side}.calibration-fraction must be 0 or more and leave documents to train on beside held-out-fraction {HeldOutFraction}, got {calibration}.");
        if (!IsBio && requireFolder && Corpus is null && string.IsNullOrWhiteSpace(Folder))
            throw new ArgumentException($"{side}.folder is required for text data (give it in the file or with --{side} DIR), or {side}.corpus, a built-in corpus.");
        return this;
    }
}

/// <summary>A training phase: steps of batches of sequences.</summary>
internal sealed record PhaseSpec
{
    public int Steps { get; init; } = 250;
    public int Batch { get; init; } = 32;
    public int SequenceLength { get; init; } = 128;
    public double LearningRate { get; init; } = 2e-3;
    public int WarmupSteps { get; init; } = 20;
    /// <summary>Phase 1 evaluates every this many steps and keeps the best checkpoint (recall drifts down with over-training).</summary>
    public int EvaluateEvery { get; init; } = 25;

    public long TokensPerStep => (long)Batch * SequenceLength;

    public PhaseSpec Validate(string name)
    {
        if (Steps < 1) throw new ArgumentException($"{name}.steps must be at least 1, got {Steps}.");
        if (Batch < 1) throw new ArgumentException($"{name}.batch must be at least 1, got {Batch}.");
        if (SequenceLength < 2) throw new ArgumentException($"{name}.sequence_length must be at least 2, got {SequenceLength}.");
        if (!(LearningRate > 0)) throw new ArgumentException($"{name}.learning_rate must be positive, got {LearningRate}.");
        if (EvaluateEvery < 1) throw new ArgumentException($"{name}.evaluate_every must be at least 1, got {EvaluateEvery}.");
        return this;
    }
}

/// <summary>Which of population A's people Task 0 is measured on in the `bio-qa` protocol.</summary>
internal enum QaMeasure
{
    /// <summary>The half of A whose questions were not trained: knowledge extraction (the paper's Task 0).</summary>
    HeldOut,
    /// <summary>The half whose questions Task 0 trained on (when extraction does not generalise at a given size).</summary>
    Trained,
}

/// <summary>
/// The paper's biography QA protocol (`bio-qa`, docs/method.md): the base pre-trains on A's biographies and is then
/// fine-tuned (Task 0) on the questions about half of A; each method then trains on the questions about new people B
/// (Task 1). Retention is Task-0 first-token accuracy, acquisition Task-1 first-token accuracy.
/// </summary>
internal sealed record QaSpec
{
    /// <summary>Task 0: full fine-tuning of the pre-trained base on QA about the first half of A; the best step is kept.</summary>
    public PhaseSpec Task0 { get; init; } = new() { Steps = 150, LearningRate = 1e-3, WarmupSteps = 10, EvaluateEvery = 25 };
    public QaMeasure Measure { get; init; } = QaMeasure.HeldOut;
    /// <summary>Passes over the questions in the QA corpora, each in its own order.</summary>
    public int Passes { get; init; } = 4;

    public QaSpec Validate()
    {
        Task0.Validate("qa.task0");
        if (Passes < 1) throw new ArgumentException($"qa.passes must be at least 1, got {Passes}.");
        return this;
    }
}

/// <summary>
/// The two-phase experiment (docs/method.md): pre-train a base on the old data, then continually pre-train each
/// method on the new data with the same token budget, and score retention (old) and acquisition (new).
/// </summary>
internal sealed partial record ExperimentSpec
{
    public string Name { get; init; } = "experiment";
    public long Seed { get; init; } = 1;
    /// <summary>Byte-level BPE vocabulary, trained on the old data (the base's corpus).</summary>
    public int VocabSize { get; init; } = 2048;
    /// <summary>The base's shape; its vocabulary size comes from the tokenizer.</summary>
    public ModelConfig Model { get; init; } = new() { HiddenSize = 128, NumLayers = 4, NumHeads = 4, IntermediateSize = 344 };

    /// <summary>
    /// An imported Hugging Face model directory (config.json, safetensors, tokenizer.json) to use as the base instead of
    /// pre-training one: phase 1 is skipped, the data are tokenised with the model's own tokenizer, and <see cref="Model"/>
    /// becomes the model's configuration.
    /// </summary>
    public string? BaseModel { get; init; }

    /// <summary>This spec with <see cref="BaseModel"/> set to <paramref name="directory"/> and <see cref="Model"/> read from it.</summary>
    public ExperimentSpec WithBaseModel(string directory)
    {
        var config = Checkpoints.HfCheckpoint.ReadConfig(directory);
        if (!File.Exists(Path.Combine(directory, "tokenizer.json")))
            throw new ArgumentException($"{directory}: the base model needs its tokenizer.json to tokenise the data.");
        return this with { BaseModel = Path.GetFullPath(directory), Model = config, VocabSize = config.VocabSize };
    }
    public DataSpec Old { get; init; } = new();
    public DataSpec New { get; init; } = new();
    public PhaseSpec Pretrain { get; init; } = new();
    /// <summary>
    /// The continual phase's schedule. Its learning rate is only a fallback: each trained method has its own default rate
    /// (<see cref="TrialPlanner.MethodDefaults"/>), and a rate for every method is the setting `lr` in <see cref="Settings"/>
    /// (an experiment file's `continual.learning-rate`).
    /// </summary>
    public PhaseSpec Continual { get; init; } = new();
    /// <summary>
    /// Whether the base's tokenizer also covers the new data's language, as a real base model's multilingual tokenizer
    /// does, while the base still pre-trains on the old data only: for biographies it also trains on other people's
    /// biographies in the new language (never the new population's), for text on the new corpus's training documents.
    /// Left out of the JSON when false (fingerprints of earlier sweeps stay).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool TokenizerCoversNew { get; init; }

    /// <summary>The biography QA protocol (null: the plain two-phase experiment on biographies or text). Left out of the
    /// JSON when null, so that the fingerprints of sweeps journaled before it existed do not change.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public QaSpec? Qa { get; init; }
    /// <summary>Task suites scored on every method's final weights, old side and new (null: none). Left out of the JSON when null
    /// (fingerprints of earlier sweeps stay).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Evaluation.SuitesSpec? Suites { get; init; }
    public IReadOnlyList<string> Methods { get; init; } = ["frozen", "full", "freeze", "depth", "lora", "preserve", "adapt", "route"];

    /// <summary>
    /// The experiment's own method settings, by sweep key (e.g. heads_up = 2, from the file's `scale.heads-up`): they
    /// apply to every method they concern, over the methods' defaults, and a trial's own parameters override them
    /// (<see cref="TrialPlanner"/>). Sorted, so that the experiment's fingerprint does not depend on the file's order.
    /// </summary>
    public IReadOnlyDictionary<string, string> Settings { get; init; } = new SortedDictionary<string, string>(StringComparer.Ordinal);

    /// <summary>
    /// Checks every field; <paramref name="requireFolders"/> false allows a text experiment whose folders come later (the command
    /// line), <paramref name="checkLimits"/> false leaves the size limits (<see cref="ExperimentLimits"/>) to a later check, for an
    /// experiment that is not final yet (a sweep's, before its `base` and max-concurrent apply).
    /// </summary>
    public ExperimentSpec Validate(bool requireFolders = true, bool checkLimits = true)
    {
        // The name is a directory under the data directory (`experiments/{name}`, removed and written again per method).
        if (!NamePattern().IsMatch(Name ?? "") || Name!.Trim('.').Length == 0)
            throw new ArgumentException($"experiment name '{Name}' is not a safe name: use letters, digits and _ . - (at most 64, starting with a letter or digit).");
        if (VocabSize < 257) throw new ArgumentException($"vocab_size must be at least 257 (the bytes and end-of-text), got {VocabSize}.");
        Old.Validate("old", requireFolders);
        New.Validate("new", requireFolders);
        Pretrain.Validate("pretrain");
        Continual.Validate("continual");
        if (Old.IsBio != New.IsBio) throw new ArgumentException("old and new must both be bio or both be text data.");
        if (TokenizerCoversNew && BaseModel is not null)
            throw new ArgumentException("tokenizer.covers-new does not apply to an imported base: it brings its own tokenizer.");
        if (TokenizerCoversNew && Qa is not null)
            throw new ArgumentException("tokenizer.covers-new does not apply to qa: its old and new data are both English.");
        if (Qa is not null)
        {
            Qa.Validate();
            if (!Old.IsBio) throw new ArgumentException("qa needs biographies: old and new must be kind = bio.");
            if (Old.Language != BioLanguage.English || New.Language != BioLanguage.English)
                throw new ArgumentException("qa's questions are English: old and new must be language = english.");
            if (Old.People < 2) throw new ArgumentException($"qa splits old.people in two halves (Task 0 and its held-out people): it needs at least 2, got {Old.People}.");
            if (BaseModel is not null) throw new ArgumentException("qa pre-trains its own base on biographies; it cannot start from an imported model.");
        }
        Suites?.Validate(Old, New);
        if (Methods.Count == 0) throw new ArgumentException("methods is empty.");
        // The vocabulary's bound is the limits' to name (with what the data can teach): the model is checked within range.
        (Model with { VocabSize = Math.Clamp(VocabSize, 1, ModelConfig.MaxVocab) }).Validate();
        TrialPlanner.ValidateSettings(this);
        if (checkLimits) CheckFinal();
        return this;
    }

    /// <summary>
    /// The checks a final experiment gets before anything of it runs: the size limits with <paramref name="concurrentTrials"/>
    /// trials at once (<see cref="ExperimentLimits"/>), and every token-shard folder's index (sizes, paths inside it), so that a
    /// damaged shard set is refused here rather than after a sweep has been journaled.
    /// </summary>
    public ExperimentSpec CheckFinal(int concurrentTrials = 1)
    {
        ExperimentLimits.Check(this, concurrentTrials);
        Suites?.CheckFiles();
        foreach (var (side, data) in new[] { ("old", Old), ("new", New) })
        {
            if (data.IsBio || data.Folder is null || !ShardIndex.IsShardDirectory(data.Folder)) continue;
            try
            {
                ShardIndex.Read(data.Folder);
            }
            catch (InvalidCheckpointException e)
            {
                throw new ArgumentException($"{side}.folder: {e.Message}");
            }
        }
        return this;
    }

    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    private static partial System.Text.RegularExpressions.Regex NamePattern();
}

/// <summary>Scores of one method after continual pre-training. For biographies scores are attribute recall
/// (higher is better); for text they are held-out perplexity (lower is better), and forgetting is then the rise.
/// Its JSON (`scale experiment`'s output) keeps the scores' fields at the top level, as users' scripts read them.</summary>
internal sealed record MethodResult
{
    [JsonPropertyName("method")] public required string Method { get; init; }
    [JsonPropertyName("trainable_params")] public long TrainableParams { get; init; }
    [JsonIgnore] public Scores Scores { get; init; } = null!;   // not `required`: System.Text.Json refuses a required member it ignores
    [JsonPropertyName("retention")] public double Retention => Scores.Retention;
    [JsonPropertyName("acquisition")] public double Acquisition => Scores.Acquisition;
    [JsonPropertyName("forgetting")] public double Forgetting => Scores.Forgetting;
    [JsonPropertyName("tokens_per_second")] public double TokensPerSecond { get; init; }
    [JsonPropertyName("train_seconds")] public double TrainSeconds { get; init; }
    /// <summary>Loss of the last training step (null when nothing trains).</summary>
    [JsonPropertyName("final_loss")] public double? FinalLoss { get; init; }
    [JsonPropertyName("retention_by_attribute")] public IReadOnlyDictionary<string, double>? RetentionByAttribute { get; init; }
    [JsonPropertyName("acquisition_by_attribute")] public IReadOnlyDictionary<string, double>? AcquisitionByAttribute { get; init; }
    [JsonPropertyName("retention_first_token")] public double? RetentionFirstToken => Scores.RetentionFirstToken;
    [JsonPropertyName("acquisition_first_token")] public double? AcquisitionFirstToken => Scores.AcquisitionFirstToken;
    /// <summary>Each task of the experiment's suites on the final weights (null: the experiment names no suite).</summary>
    [JsonPropertyName("tasks"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<Evaluation.TaskResult>? Tasks => Scores.Tasks;
}

internal sealed record ExperimentResult
{
    [JsonPropertyName("experiment")] public required string Experiment { get; init; }
    [JsonPropertyName("metric")] public required string Metric { get; init; }
    [JsonPropertyName("base_old")] public double BaseOld { get; init; }
    [JsonPropertyName("base_new")] public double BaseNew { get; init; }
    [JsonPropertyName("base_params")] public long BaseParams { get; init; }
    [JsonPropertyName("base_pretrain_seconds")] public double BasePretrainSeconds { get; init; }
    [JsonPropertyName("base_best_step")] public long BaseBestStep { get; init; }
    [JsonPropertyName("base_cached")] public bool BaseCached { get; init; }
    [JsonPropertyName("methods")] public required IReadOnlyList<MethodResult> Methods { get; init; }
    [JsonPropertyName("wall_seconds")] public double WallSeconds { get; init; }
    /// <summary>The matrix products' kernel path every method trained on (<see cref="Native.MklKernels"/>).</summary>
    [JsonPropertyName("kernels")] public string Kernels { get; init; } = Native.MklKernels.Current.Id;
}
