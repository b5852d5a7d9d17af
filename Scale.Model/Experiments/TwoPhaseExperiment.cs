using System.Diagnostics;
using System.Security.Cryptography;
using Encoding = System.Text.Encoding;
using System.Text.Json;
using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Training;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using static TorchSharp.torch;

namespace Scale.Model.Experiments;

/// <summary>What a running experiment reports: which phase and method, and how far it is.</summary>
internal sealed record ExperimentProgress(string Phase, string Method, long Step, long TotalSteps, double Loss, double TokensPerSecond, string? Note = null);

/// <summary>A prepared continual phase: the resident frozen base, its tokenizer, the trial runner over the new data.</summary>
internal sealed class ExperimentTask(ExperimentSpec spec, Decoder baseModel, ITokenizer tokenizer, TrialRunner runner, double baseNew,
                                   double basePretrainSeconds, long baseBestStep, bool baseCached,
                                   IReadOnlyList<BioPrompt>? oldPrompts, IReadOnlyList<BioPrompt>? newPrompts) : IDisposable
{
    public ExperimentSpec Spec { get; } = spec;
    public Decoder Base { get; } = baseModel;
    public ITokenizer Tokenizer { get; } = tokenizer;
    public TrialRunner Runner { get; } = runner;
    public double BaseOld => Runner.Scoring.BaseOld;
    public double BaseNew { get; } = baseNew;
    public double BasePretrainSeconds { get; } = basePretrainSeconds;
    public long BaseBestStep { get; } = baseBestStep;
    public bool BaseCached { get; } = baseCached;
    public IReadOnlyList<BioPrompt>? OldPrompts { get; } = oldPrompts;
    public IReadOnlyList<BioPrompt>? NewPrompts { get; } = newPrompts;
    public string Metric => Spec.Qa is not null ? "first-token accuracy" : Spec.Old.IsBio ? "attribute recall" : "held-out perplexity";
    /// <summary>The scores' metric name (<see cref="ScoreMetric"/>).</summary>
    public string ScoreMetricName => Runner.Scoring.Metric;

    public void Dispose()
    {
        Runner.ReleaseDevices();
        Base.Dispose();
        (Tokenizer as IDisposable)?.Dispose();
    }
}

/// <summary>
/// Runs the two-phase experiment: phase 1 pre-trains the base on the old data (cached under the data
/// directory by a content hash of its configuration and documents, so a second run reuses it), phase 2
/// trains each method on the new data with the same token budget and scores retention and acquisition.
/// </summary>
internal static class TwoPhaseExperiment
{
    private const int CacheFormat = 1;

    /// <summary>The world of the people whose biographies only the tokenizer reads: new.world-seed plus this.</summary>
    private const long TokenizerWorldOffset = 7919;

    /// <summary>The seed of the old people's calibration renderings: the side's seed plus this.</summary>
    private const long CalibrationSeedOffset = 104729;

    private sealed record Side(IReadOnlyList<string> Train, IReadOnlyList<string> HeldOut, IReadOnlyList<BioPrompt>? Prompts)
    {
        /// <summary>Documents the tokenizer also trains on (the old side's only), never the model.</summary>
        public IReadOnlyList<string> TokenizerExtra { get; init; } = [];
        /// <summary>Token shards (`scale tokenize`) in place of documents, read and checked once: read batch by batch, never loaded whole.</summary>
        public (string Directory, ShardIndex Index)? Shards { get; init; }
        /// <summary>The old side's calibration slice (novelty-auto routing): documents neither trained on nor held out, or of the
        /// base's own old data (biographies rendered anew; bio-qa's Task-0 questions), never the held-out set's.</summary>
        public IReadOnlyList<string> Calibration { get; init; } = [];
        /// <summary>The side's population (biographies): what the built-in <see cref="BioChoices"/> ask about.</summary>
        public IReadOnlyList<Person>? People { get; init; }
    }

    /// <summary>Held-out windows scored from a shard set, at most: spread evenly over the split.</summary>
    public const int MaxShardHeldOutWindows = 512;

    /// <summary>The `bio-qa` protocol's Task 0: the QA documents of the first half of A, and the questions it is measured on.</summary>
    private sealed record QaTask0(IReadOnlyList<string> Train, IReadOnlyList<BioPrompt> Measured);

    private sealed record BaseInfo(long BestStep, double BestScore, double Seconds);

    /// <summary>
    /// Everything the continual phase needs, built once: the frozen base (loaded from the cache or pre-trained),
    /// its tokenizer and scores, the packed new data and the scoring of retention and acquisition. The sweep
    /// runner keeps one of these resident per process and shares its base between all trials.
    /// </summary>
    public static ExperimentTask Prepare(ExperimentSpec spec, string dataDirectory, IProgress<ExperimentProgress>? progress = null,
                                         CancellationToken cancellation = default)
    {
        spec.Validate();
        spec = WithCorpora(spec, dataDirectory, progress);
        var (old, @new, task0) = Prepare(spec);
        // The task suites are read and checked before any model loads or trains.
        var suites = Suites(spec, old, @new);
        var (baseModel, tokenizer, info, cached) = LoadOrPretrain(spec, old, dataDirectory, progress, cancellation);
        bool bio = spec.Old.IsBio;
        TrialScoring scoring;
        if (task0 is not null)
        {
            var baseKey = BaseKey(spec, old);
            (baseModel, cached) = LoadOrTrainTask0(spec, baseKey, baseModel, tokenizer, task0, dataDirectory, progress, cancellation, cached);
            double baseOld = TeacherForcedRecall.Measure(baseModel, tokenizer, task0.Measured).FirstTokenAccuracy;
            scoring = TrialScoring.FirstTokenAccuracy(tokenizer, task0.Measured, @new.Prompts!, baseOld);
            // Task 0's own questions (the half of A it trained on) calibrate: old data of the Task-0 model, never the measured half's.
            old = old with { Prompts = task0.Measured, Calibration = task0.Train };
        }
        else if (bio)
        {
            double baseOld = TrialScoring.RecallOf(baseModel, tokenizer, old.Prompts!, spec.Old.Language).Recall;
            scoring = TrialScoring.Recall(tokenizer, old.Prompts!, @new.Prompts!, baseOld, spec.Old.Language, spec.New.Language);
        }
        else
        {
            // Held-out text is tokenised once, not at every evaluation.
            var oldHeldOut = Windows(old, heldOut: true, tokenizer, spec.Continual.SequenceLength);
            var newHeldOut = Windows(@new, heldOut: true, tokenizer, spec.Continual.SequenceLength);
            scoring = TrialScoring.Perplexity(oldHeldOut, newHeldOut, Metrics.Perplexity(baseModel, oldHeldOut));
        }
        scoring.Calibration = old.Shards is not null
            ? TokenShards.Open(old.Shards.Value.Directory, old.Shards.Value.Index, heldOut: false, spec.Continual.SequenceLength).Spread(RoutingCalibration.MaxWindows)
            : Pack(old.Calibration, tokenizer, spec.Continual.SequenceLength);
        if (suites.Count > 0) scoring.Tasks = new TaskSuites(suites, tokenizer, spec.Suites!.EveryEvaluation);
        double baseNew = scoring.New(baseModel);
        progress?.Report(new("evaluate", "base", 0, 0, 0, 0, $"base: old {scoring.BaseOld:0.000}, new {baseNew:0.000}"));
        var newTrain = Windows(@new, heldOut: false, tokenizer, spec.Continual.SequenceLength);
        return new ExperimentTask(spec, baseModel, tokenizer, new TrialRunner(baseModel, newTrain, scoring), baseNew,
                                  info.Seconds, info.BestStep, cached,
                                  bio ? old.Prompts : null, bio ? @new.Prompts : null);
    }

    /// <summary>The experiment's task suites, loaded: task files read and checked, the built-in biography choices of each side's population.</summary>
    private static IReadOnlyList<TaskSuite> Suites(ExperimentSpec spec, Side old, Side @new)
    {
        if (spec.Suites is not { } suites) return [];
        return suites.Old.Select(t => (Side: "old", Task: t, Data: old, Language: spec.Old.Language))
            .Concat(suites.New.Select(t => (Side: "new", Task: t, Data: @new, Language: spec.New.Language)))
            .Select(s => s.Task.IsBuiltIn ? TaskSuite.BioChoice(s.Side, s.Task, s.Data.People!, s.Language) : TaskSuite.Load(s.Side, s.Task))
            .ToList();
    }

    /// <summary>The experiment with each built-in corpus it names (<see cref="DataSpec.Corpus"/>) as its folder under the data directory, prepared there if it is not yet.</summary>
    public static ExperimentSpec WithCorpora(ExperimentSpec spec, string dataDirectory, IProgress<ExperimentProgress>? progress = null)
    {
        DataSpec Resolve(DataSpec data)
        {
            if (data.Corpus is not { } name) return data;
            var folder = DebianHelpCorpora.Ensure(name, dataDirectory, report: line => progress?.Report(new("corpus", name, 0, 0, 0, 0, line)));
            var counts = DebianHelpCorpora.Counts(folder);
            progress?.Report(new("corpus", name, 0, 0, 0, 0, $"{name} ({counts.Language}): {counts.Documents:N0} documents, {counts.Characters:N0} characters"));
            return data with { Folder = folder, Corpus = null };
        }
        return spec with { Old = Resolve(spec.Old), New = Resolve(spec.New) };
    }

    /// <summary>Where `scale experiment` keeps each method's checkpoints: `{data}/experiments/{name}/{method}`.</summary>
    public static string MethodDirectory(string dataDirectory, ExperimentSpec spec, string method)
    {
        // Removed recursively before the method trains: it must lie inside the data directory whatever the names say.
        var root = Path.GetFullPath(Path.Combine(dataDirectory, "experiments")).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        var directory = Path.GetFullPath(Path.Combine(root, spec.Name, method));
        return directory.StartsWith(root, StringComparison.Ordinal) && Path.GetDirectoryName(Path.GetDirectoryName(directory)) + Path.DirectorySeparatorChar == root
            ? directory
            : throw new ArgumentException($"experiment '{spec.Name}', method '{method}': the checkpoint directory would lie outside {root}.");
    }

    /// <summary>
    /// Phase 2 for every method of the experiment, each as one trial: planned by <see cref="TrialPlanner"/> and trained
    /// and scored by the same <see cref="TrialRunner"/> (same seeds, same batches) as a sweep's trial with the same
    /// settings, so both give the same numbers. With several <paramref name="devices"/>, one trainer per device takes
    /// the next method in turn (the base resident once per device, <paramref name="threadsPerDevice"/> libtorch threads
    /// each; 0 keeps the process's setting), with linear maps in <paramref name="precision"/> when given (bf16 autocast on
    /// CUDA); the results keep the experiment's order of methods.
    /// </summary>
    public static ExperimentResult Run(ExperimentSpec spec, string dataDirectory, IProgress<ExperimentProgress>? progress = null,
                                       CancellationToken cancellation = default, IReadOnlyList<Device>? devices = null, int threadsPerDevice = 0,
                                       ScalarType? precision = null)
    {
        var wall = Stopwatch.StartNew();
        devices = devices is { Count: > 0 } ? devices : [CPU];
        using var task = Prepare(spec, dataDirectory, progress, cancellation);
        var results = new MethodResult?[spec.Methods.Count];
        int next = -1;
        void Train(Device device)
        {
            if (threadsPerDevice > 0) TorchSharp.torch.set_num_threads(threadsPerDevice);
            var runner = task.Runner.On(device, precision);
            int index;
            while ((index = Interlocked.Increment(ref next)) < spec.Methods.Count)
            {
                cancellation.ThrowIfCancellationRequested();
                results[index] = RunMethod(spec, spec.Methods[index], runner, dataDirectory, progress, cancellation);
            }
        }
        if (devices.Count == 1) Train(devices[0]);
        else
        {
            var trainers = devices.Select(d => Task.Factory.StartNew(() => Train(d), cancellation, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
            try
            {
                Task.WaitAll(trainers, CancellationToken.None);
            }
            catch (AggregateException e) when (e.InnerExceptions.Count >= 1)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
            }
        }
        return new ExperimentResult
        {
            Experiment = spec.Name,
            Metric = task.Metric,
            BaseOld = task.BaseOld, BaseNew = task.BaseNew, BaseParams = task.Base.ParameterCount(),
            BasePretrainSeconds = task.BasePretrainSeconds, BaseBestStep = task.BaseBestStep, BaseCached = task.BaseCached,
            Methods = results.Select(r => r!).ToList(), WallSeconds = wall.Elapsed.TotalSeconds,
        };
    }

    private static MethodResult RunMethod(ExperimentSpec spec, string name, TrialRunner runner, string dataDirectory,
                                          IProgress<ExperimentProgress>? progress, CancellationToken cancellation)
    {
        var plan = TrialPlanner.Plan(spec, name);
        var directory = MethodDirectory(dataDirectory, spec, name);
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);   // a new run of the experiment starts each method afresh
        var clock = Stopwatch.StartNew();
        var trained = runner.Train(plan, directory, cancellation: cancellation,
            onStep: step => progress?.Report(new("continual", name, step.Step, plan.Phase.Steps, step.Loss,
                                                 plan.Phase.TokensPerStep * step.Step / Math.Max(clock.Elapsed.TotalSeconds, 1e-9))));
        var scored = runner.Evaluate(plan, trained.FinalCheckpoint);
        var scores = scored.Scores;
        var tasks = string.Concat((scores.Tasks ?? []).Select(t => $", {t.Label} {t.Headline.Value:0.000}"));
        progress?.Report(new("evaluate", name, 0, 0, 0, trained.TokensPerSecond, $"{name}: retention {scores.Retention:0.000}, acquisition {scores.Acquisition:0.000}{tasks}"));
        return new MethodResult
        {
            Method = name,
            TrainableParams = trained.TrainableParameters,
            Scores = scores,
            TokensPerSecond = trained.TokensPerSecond,
            TrainSeconds = trained.TrainSeconds,
            FinalLoss = trained.FinalCheckpoint is null ? null : trained.FinalLoss,
            RetentionByAttribute = scored.RetentionByAttribute,
            AcquisitionByAttribute = scored.AcquisitionByAttribute,
        };
    }

    private static (Side Old, Side New, QaTask0? Task0) Prepare(ExperimentSpec spec)
    {
        var worlds = new Dictionary<(BioLanguage, long), BioWorld>();
        Side Make(DataSpec data, long seed, bool old)
        {
            if (!data.IsBio && ShardIndex.IsShardDirectory(data.Folder!))
            {
                if (spec.BaseModel is null)
                    throw new ArgumentException($"{data.Folder}: token shards need the model whose tokenizer made them as the base (base = DIR); " +
                                                "a base Scale pre-trains tokenizes text folders with a tokenizer of its own.");
                var index = ShardIndex.Read(data.Folder!);
                var expected = ShardIndex.Hash(Path.Combine(spec.BaseModel, HfTokenizer.FileName));
                if (index.TokenizerSha256 != expected)
                    throw new ArgumentException($"{data.Folder}: the shards were made with another tokenizer than {spec.BaseModel}'s (SHA-256 {index.TokenizerSha256[..12]}…, the base's {expected[..12]}…); tokenize the corpus again with --model {spec.BaseModel}.");
                if (index.HeldOut.Sum(f => f.Tokens) == 0) throw new ArgumentException($"{data.Folder}: no held-out shards; tokenize with a --held-out-fraction above 0.");
                return new Side([], [], null) { Shards = (data.Folder!, index) };
            }
            if (!data.IsBio)
            {
                var corpus = TextCorpus.Load(data.Folder!, data.HeldOutFraction, old ? data.CalibrationFraction ?? DataSpec.DefaultCalibrationFraction : 0);
                if (corpus.HeldOut.Count == 0) throw new ArgumentException($"{data.Folder}: no held-out documents; raise held_out_fraction or add documents.");
                if (old && corpus.Calibration.Count == 0)
                    throw new ArgumentException($"{data.Folder}: no documents for the calibration slice of novelty-auto routing; raise calibration-fraction or add documents.");
                return new Side(corpus.Train, corpus.HeldOut, null) { Calibration = corpus.Calibration };
            }
            if (!worlds.TryGetValue((data.Language, data.WorldSeed), out var world))
                worlds[(data.Language, data.WorldSeed)] = world = new BioWorld(data.Language, data.WorldSeed);
            var people = world.DrawPopulation(data.People);   // a second draw from one world is disjoint from the first
            // The calibration slice: the same people's biographies rendered anew (other template and order draws), a
            // rendering each: text about what the base learned, neither its training documents nor the prompts scored.
            return new Side(BioRenderer.Corpus(people, data.Language, data.Renderings, seed), [],
                            people.SelectMany(p => BioRenderer.Prompts(p, data.Language)).ToList())
            {
                Calibration = old ? BioRenderer.Corpus(people, data.Language, 1, seed + CalibrationSeedOffset) : [],
                People = people,
            };
        }
        if (spec.Qa is not { } qa)
        {
            var (oldSide, newSide) = (Make(spec.Old, spec.Seed, old: true), Make(spec.New, spec.Seed + 1, old: false));
            if (!spec.TokenizerCoversNew) return (oldSide, newSide, null);
            // The tokenizer covers the new data's language as a real base model's does, without seeing the new data's
            // facts: for biographies, other people of the new language from a world of their own (so neither B's
            // names nor its values); for text, the new corpus's training documents (never its held-out ones).
            var extra = spec.New.IsBio
                ? BioRenderer.Corpus(new BioWorld(spec.New.Language, spec.New.WorldSeed + TokenizerWorldOffset).DrawPopulation(spec.New.People),
                                     spec.New.Language, spec.New.Renderings, spec.Seed + 3)
                : newSide.Train;
            return (oldSide with { TokenizerExtra = extra }, newSide, null);
        }
        // bio-qa: A's biographies for pre-training, A's first half's questions for Task 0 (measured on the other half, or
        // on the same half), and only questions about B, who appear in no biography, for Task 1.
        var world = new BioWorld(spec.Old.Language, spec.Old.WorldSeed);
        var a = world.DrawPopulation(spec.Old.People);
        var b = (spec.New.WorldSeed == spec.Old.WorldSeed ? world : new BioWorld(spec.New.Language, spec.New.WorldSeed)).DrawPopulation(spec.New.People);
        int half = a.Count / 2;
        var (trainedHalf, heldOutHalf) = (a.Take(half).ToList(), a.Skip(half).ToList());
        var old = new Side(BioRenderer.Corpus(a, spec.Old.Language, spec.Old.Renderings, spec.Seed), [],
                           a.SelectMany(p => BioRenderer.Prompts(p, spec.Old.Language)).ToList()) { People = a };
        var measured = (qa.Measure == QaMeasure.HeldOut ? heldOutHalf : trainedHalf).SelectMany(BioQa.Prompts).ToList();
        var task0 = new QaTask0(BioQa.Corpus(trainedHalf, qa.Passes, spec.Seed + 2), measured);
        var @new = new Side(BioQa.Corpus(b, qa.Passes, spec.Seed + 1), [], b.SelectMany(BioQa.Prompts).ToList()) { People = b };
        return (old, @new, task0);
    }

    /// <summary>
    /// bio-qa's Task 0 on the pre-trained base: full fine-tuning on the first half of A's questions, keeping the step
    /// with the best first-token accuracy on the questions Task 0 is measured on; cached like the base (by the base's
    /// key, the QA settings and the documents), so every method of every run starts from the same Task-0 model.
    /// </summary>
    private static (Decoder Model, bool Cached) LoadOrTrainTask0(ExperimentSpec spec, string baseKey, Decoder model, ITokenizer tokenizer,
                                                               QaTask0 task0, string dataDirectory, IProgress<ExperimentProgress>? progress,
                                                               CancellationToken cancellation, bool baseCached)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { format = CacheFormat, baseKey, spec.Qa, spec.Seed })));
        foreach (var document in task0.Train.Concat(task0.Measured.Select(p => p.Prompt + " " + p.Answer)))
        {
            hash.AppendData(Encoding.UTF8.GetBytes(document));
            hash.AppendData([0]);
        }
        var directory = Path.Combine(dataDirectory, "bases", "qa-" + Convert.ToHexString(hash.GetHashAndReset())[..16].ToLowerInvariant());
        var infoPath = Path.Combine(directory, "base.json");
        if (File.Exists(infoPath))
        {
            progress?.Report(new("task0", "base", 0, 0, 0, 0, $"reusing the cached Task-0 model in {directory}"));
            model.Dispose();
            return (HfCheckpoint.Load(directory).Freeze(), baseCached);
        }
        var phase = spec.Qa!.Task0;
        double before = TeacherForcedRecall.Measure(model, tokenizer, task0.Measured).FirstTokenAccuracy;
        progress?.Report(new("task0", "base", 0, phase.Steps, 0, 0,
                             $"Task 0: QA fine-tuning on {task0.Train.Count} question documents; first-token accuracy before it {before:0.000}"));
        foreach (var p in model.parameters()) p.requires_grad = true;
        var packed = Pack(task0.Train, tokenizer, phase.SequenceLength);
        var (seconds, bestStep, bestScore) = PretrainKeepingBest(model, packed, phase, spec.Seed + 2,
            () => TeacherForcedRecall.Measure(model, tokenizer, task0.Measured).FirstTokenAccuracy, progress, cancellation, "task0");
        model.Freeze();
        progress?.Report(new("task0", "base", phase.Steps, phase.Steps, 0, 0, $"Task 0: best first-token accuracy {bestScore:0.000} at step {bestStep}"));
        SaveBase(model, tokenizer, directory, new BaseInfo(bestStep, bestScore, seconds));
        return (model, false);
    }

    /// <summary>A side's training or held-out windows: from its shards (held-out ones spread over at most <see cref="MaxShardHeldOutWindows"/>), or packed from its documents.</summary>
    private static ITokenWindows Windows(Side side, bool heldOut, ITokenizer tokenizer, int sequenceLength)
    {
        if (side.Shards is not var (directory, index)) return Pack(heldOut ? side.HeldOut : side.Train, tokenizer, sequenceLength);
        var shards = TokenShards.Open(directory, index, heldOut, sequenceLength);
        return heldOut ? shards.Spread(MaxShardHeldOutWindows) : shards;
    }

    private static PackedSequences Pack(IReadOnlyList<string> documents, ITokenizer tokenizer, int sequenceLength)
        => new(documents.Select(tokenizer.EncodeDocument), tokenizer.EndOfTextId, sequenceLength);

    private static (Decoder Base, ITokenizer Tokenizer, BaseInfo Info, bool Cached) LoadOrPretrain(
        ExperimentSpec spec, Side old, string dataDirectory, IProgress<ExperimentProgress>? progress, CancellationToken cancellation)
    {
        if (spec.BaseModel is { } imported)
        {
            progress?.Report(new("pretrain", "base", 0, 0, 0, 0, $"using the imported base model {imported}"));
            var importedModel = HfCheckpoint.Load(imported).Freeze();
            return (importedModel, HfTokenizer.Load(imported, importedModel.Config.VocabSize), new BaseInfo(0, double.NaN, 0), true);
        }
        var directory = Path.Combine(dataDirectory, "bases", BaseKey(spec, old));
        var infoPath = Path.Combine(directory, "base.json");
        if (File.Exists(infoPath))
        {
            progress?.Report(new("pretrain", "base", 0, 0, 0, 0, $"reusing the cached base in {directory}"));
            return (HfCheckpoint.Load(directory).Freeze(), ByteBpeTokenizer.Load(Path.Combine(directory, "tokenizer.json")),
                    JsonSerializer.Deserialize<BaseInfo>(File.ReadAllText(infoPath))!, true);
        }
        progress?.Report(new("pretrain", "tokenizer", 0, 0, 0, 0, $"training a {spec.VocabSize}-token byte-level BPE on the old data"));
        var tokenizer = ByteBpeTokenizer.Train(old.TokenizerExtra.Count == 0 ? old.Train : old.Train.Concat(old.TokenizerExtra).ToList(), spec.VocabSize);
        var config = spec.Model with { VocabSize = tokenizer.VocabSize };
        var model = Decoder.Create(config, spec.Seed);
        foreach (var p in model.parameters()) p.requires_grad = true;
        var packed = Pack(old.Train, tokenizer, spec.Pretrain.SequenceLength);
        var oldHeldOut = old.Prompts is null ? Pack(old.HeldOut, tokenizer, spec.Pretrain.SequenceLength) : null;
        Func<double> score = old.Prompts is { } prompts
            ? () => TeacherForcedRecall.Measure(model, tokenizer, prompts).Recall
            : () => -Metrics.Perplexity(model, oldHeldOut!);
        var (seconds, bestStep, bestScore) = PretrainKeepingBest(model, packed, spec.Pretrain, spec.Seed, score, progress, cancellation);
        model.Freeze();
        var info = new BaseInfo(bestStep, bestScore, seconds);
        SaveBase(model, tokenizer, directory, info);
        return (model, tokenizer, info, false);
    }

    /// <summary>Written to a temporary directory and moved into place whole: an interrupted run leaves no half-cached base.</summary>
    private static void SaveBase(Decoder model, ITokenizer tokenizer, string directory, BaseInfo info)
    {
        var partial = directory + ".partial";
        if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        HfCheckpoint.Save(model, partial);
        // Only bases Scale trained are cached, and their tokenizer is Scale's own.
        ((ByteBpeTokenizer)tokenizer).Save(Path.Combine(partial, "tokenizer.json"));
        File.WriteAllText(Path.Combine(partial, "base.json"), JsonSerializer.Serialize(info));
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        Directory.Move(partial, directory);
    }

    /// <summary>Content hash of everything the base depends on: its configuration, the pre-training settings and the old documents.</summary>
    private static string BaseKey(ExperimentSpec spec, Side old)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new
        {
            format = CacheFormat, model = HfCheckpoint.WriteConfig(spec.Model), spec.VocabSize, spec.Pretrain, spec.Seed,
        })));
        foreach (var document in old.Train)
        {
            hash.AppendData(Encoding.UTF8.GetBytes(document));
            hash.AppendData([0]);
        }
        if (old.TokenizerExtra.Count > 0)
        {
            hash.AppendData("tokenizer-extra"u8);
            foreach (var document in old.TokenizerExtra)
            {
                hash.AppendData(Encoding.UTF8.GetBytes(document));
                hash.AppendData([0]);
            }
        }
        return Convert.ToHexString(hash.GetHashAndReset())[..16].ToLowerInvariant();
    }

    private static (double Seconds, long BestStep, double BestScore) PretrainKeepingBest(
        Decoder model, PackedSequences packed, PhaseSpec phase, long seed, Func<double> score,
        IProgress<ExperimentProgress>? progress, CancellationToken cancellation, string phaseName = "pretrain")
    {
        var schedule = new BatchSchedule(packed.Count, phase.Batch, seed);
        using var session = new TrainingSession(model, Options(phase));
        var clock = Stopwatch.StartNew();
        double trainSeconds = 0;
        double bestScore = double.NegativeInfinity;
        long bestStep = 0;
        Dictionary<string, Tensor>? best = null;
        for (long step = 0; step < phase.Steps; step++)
        {
            cancellation.ThrowIfCancellationRequested();
            var stepClock = Stopwatch.StartNew();
            using var batch = packed.Batch(schedule.IndicesFor(step));   // freed now, not by a finalizer: it pins its token array
            var result = session.TrainStep([batch]);
            trainSeconds += stepClock.Elapsed.TotalSeconds;
            progress?.Report(new(phaseName, "base", step + 1, phase.Steps, result.Loss, phase.TokensPerStep * (step + 1) / trainSeconds));
            if ((step + 1) % phase.EvaluateEvery != 0 && step + 1 != phase.Steps) continue;
            double current = score();
            progress?.Report(new(phaseName, "base", step + 1, phase.Steps, result.Loss, 0, $"step {step + 1}: score {current:0.000}"));
            if (current <= bestScore) continue;
            bestScore = current;
            bestStep = step + 1;
            foreach (var t in best?.Values ?? Enumerable.Empty<Tensor>()) t.Dispose();
            best = model.StateTensors().ToDictionary(t => t.Key, t => t.Value.detach().clone().DetachFromDisposeScope());
        }
        using (no_grad())
        {
            foreach (var (name, p) in model.DistinctParameters()) p.copy_(best![name]);
        }
        foreach (var t in best!.Values) t.Dispose();
        return (clock.Elapsed.TotalSeconds, bestStep, bestScore);
    }

    private static TrainingOptions Options(PhaseSpec phase) => new()
    {
        LearningRate = phase.LearningRate, WarmupSteps = phase.WarmupSteps, TotalSteps = phase.Steps,
    };
}
