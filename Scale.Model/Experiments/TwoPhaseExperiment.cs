using System.Diagnostics;
using System.Security.Cryptography;
using Encoding = System.Text.Encoding;
using System.Text.Json;
using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Training;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Experiments;

/// <summary>What a running experiment reports: which phase and method, and how far it is.</summary>
public sealed record ExperimentProgress(string Phase, string Method, long Step, long TotalSteps, double Loss, double TokensPerSecond, string? Note = null);

/// <summary>A prepared continual phase: the resident frozen base, its tokenizer, the trial runner over the new data.</summary>
public sealed class ExperimentTask(ExperimentSpec spec, Decoder baseModel, ByteBpeTokenizer tokenizer, TrialRunner runner, double baseNew,
                                   double basePretrainSeconds, long baseBestStep, bool baseCached,
                                   IReadOnlyList<BioPrompt>? oldPrompts, IReadOnlyList<BioPrompt>? newPrompts) : IDisposable
{
    public ExperimentSpec Spec { get; } = spec;
    public Decoder Base { get; } = baseModel;
    public ByteBpeTokenizer Tokenizer { get; } = tokenizer;
    public TrialRunner Runner { get; } = runner;
    public double BaseOld => Runner.Scoring.BaseOld;
    public double BaseNew { get; } = baseNew;
    public double BasePretrainSeconds { get; } = basePretrainSeconds;
    public long BaseBestStep { get; } = baseBestStep;
    public bool BaseCached { get; } = baseCached;
    public IReadOnlyList<BioPrompt>? OldPrompts { get; } = oldPrompts;
    public IReadOnlyList<BioPrompt>? NewPrompts { get; } = newPrompts;
    public string Metric => Spec.Old.IsBio ? "attribute recall" : "held-out perplexity";
    /// <summary>The scores' metric name (<see cref="ScoreMetric"/>).</summary>
    public string ScoreMetricName => Runner.Scoring.Metric;

    public void Dispose() => Base.Dispose();
}

/// <summary>
/// Runs the two-phase experiment: phase 1 pre-trains the base on the old data (cached under the data
/// directory by a content hash of its configuration and documents, so a second run reuses it), phase 2
/// trains each method on the new data with the same token budget and scores retention and acquisition.
/// </summary>
public static class TwoPhaseExperiment
{
    private const int CacheFormat = 1;

    private sealed record Side(IReadOnlyList<string> Train, IReadOnlyList<string> HeldOut, IReadOnlyList<BioPrompt>? Prompts);

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
        var (old, @new) = Prepare(spec);
        var (baseModel, tokenizer, info, cached) = LoadOrPretrain(spec, old, dataDirectory, progress, cancellation);
        bool bio = spec.Old.IsBio;
        TrialScoring scoring;
        if (bio)
        {
            double baseOld = TeacherForcedRecall.Measure(baseModel, tokenizer, old.Prompts!).Recall;
            scoring = TrialScoring.Recall(tokenizer, old.Prompts!, @new.Prompts!, baseOld);
        }
        else
        {
            // Held-out text is tokenised once, not at every evaluation.
            var oldHeldOut = Pack(old.HeldOut, tokenizer, spec.Continual.SequenceLength);
            var newHeldOut = Pack(@new.HeldOut, tokenizer, spec.Continual.SequenceLength);
            scoring = TrialScoring.Perplexity(oldHeldOut, newHeldOut, Metrics.Perplexity(baseModel, oldHeldOut));
        }
        double baseNew = scoring.New(baseModel);
        progress?.Report(new("evaluate", "base", 0, 0, 0, 0, $"base: old {scoring.BaseOld:0.000}, new {baseNew:0.000}"));
        var newTrain = Pack(@new.Train, tokenizer, spec.Continual.SequenceLength);
        return new ExperimentTask(spec, baseModel, tokenizer, new TrialRunner(baseModel, newTrain, scoring), baseNew,
                                  info.Seconds, info.BestStep, cached,
                                  bio ? old.Prompts : null, bio ? @new.Prompts : null);
    }

    /// <summary>Where `scale experiment` keeps each method's checkpoints: `{data}/experiments/{name}/{method}`.</summary>
    public static string MethodDirectory(string dataDirectory, ExperimentSpec spec, string method)
        => Path.Combine(dataDirectory, "experiments", spec.Name, method);

    /// <summary>
    /// Phase 2 for every method of the experiment, each as one trial: planned by <see cref="TrialPlanner"/> and trained
    /// and scored by the same <see cref="TrialRunner"/> (same seeds, same batches) as a sweep's trial with the same
    /// settings, so both give the same numbers.
    /// </summary>
    public static ExperimentResult Run(ExperimentSpec spec, string dataDirectory, IProgress<ExperimentProgress>? progress = null,
                                       CancellationToken cancellation = default)
    {
        var wall = Stopwatch.StartNew();
        using var task = Prepare(spec, dataDirectory, progress, cancellation);
        var results = new List<MethodResult>();
        foreach (var name in spec.Methods)
        {
            cancellation.ThrowIfCancellationRequested();
            var plan = TrialPlanner.Plan(spec, name);
            var directory = MethodDirectory(dataDirectory, spec, name);
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);   // a new run of the experiment starts each method afresh
            var clock = Stopwatch.StartNew();
            var trained = task.Runner.Train(plan, directory, cancellation: cancellation,
                onStep: step => progress?.Report(new("continual", name, step.Step, plan.Phase.Steps, step.Loss,
                                                     plan.Phase.TokensPerStep * step.Step / Math.Max(clock.Elapsed.TotalSeconds, 1e-9))));
            var scores = task.Runner.Evaluate(plan, trained.FinalCheckpoint);
            results.Add(new MethodResult
            {
                Method = name,
                TrainableParams = trained.TrainableParameters,
                Retention = scores.Retention,
                Acquisition = scores.Acquisition,
                Forgetting = scores.Forgetting,
                TokensPerSecond = trained.TokensPerSecond,
                TrainSeconds = trained.TrainSeconds,
                FinalLoss = trained.FinalCheckpoint is null ? null : trained.FinalLoss,
                RetentionByAttribute = scores.RetentionByAttribute,
                AcquisitionByAttribute = scores.AcquisitionByAttribute,
                RetentionFirstToken = scores.RetentionFirstToken,
                AcquisitionFirstToken = scores.AcquisitionFirstToken,
            });
            progress?.Report(new("evaluate", name, 0, 0, 0, trained.TokensPerSecond, $"{name}: retention {scores.Retention:0.000}, acquisition {scores.Acquisition:0.000}"));
        }
        return new ExperimentResult
        {
            Experiment = spec.Name,
            Metric = task.Metric,
            BaseOld = task.BaseOld, BaseNew = task.BaseNew, BaseParams = task.Base.ParameterCount(),
            BasePretrainSeconds = task.BasePretrainSeconds, BaseBestStep = task.BaseBestStep, BaseCached = task.BaseCached,
            Methods = results, WallSeconds = wall.Elapsed.TotalSeconds,
        };
    }

    private static (Side Old, Side New) Prepare(ExperimentSpec spec)
    {
        var worlds = new Dictionary<(BioLanguage, long), BioWorld>();
        Side Make(DataSpec data, long seed)
        {
            if (!data.IsBio)
            {
                var corpus = TextCorpus.Load(data.Folder!, data.HeldOutFraction);
                if (corpus.HeldOut.Count == 0) throw new ArgumentException($"{data.Folder}: no held-out documents; raise held_out_fraction or add documents.");
                return new Side(corpus.Train, corpus.HeldOut, null);
            }
            if (!worlds.TryGetValue((data.Language, data.WorldSeed), out var world))
                worlds[(data.Language, data.WorldSeed)] = world = new BioWorld(data.Language, data.WorldSeed);
            var people = world.DrawPopulation(data.People);   // a second draw from one world is disjoint from the first
            return new Side(BioRenderer.Corpus(people, data.Language, data.Renderings, seed), [],
                            people.SelectMany(p => BioRenderer.Prompts(p, data.Language)).ToList());
        }
        return (Make(spec.Old, spec.Seed), Make(spec.New, spec.Seed + 1));
    }

    private static PackedSequences Pack(IReadOnlyList<string> documents, ByteBpeTokenizer tokenizer, int sequenceLength)
        => new(documents.Select(tokenizer.Encode), tokenizer.EndOfTextId, sequenceLength);

    private static (Decoder Base, ByteBpeTokenizer Tokenizer, BaseInfo Info, bool Cached) LoadOrPretrain(
        ExperimentSpec spec, Side old, string dataDirectory, IProgress<ExperimentProgress>? progress, CancellationToken cancellation)
    {
        if (spec.BaseModel is { } imported)
        {
            progress?.Report(new("pretrain", "base", 0, 0, 0, 0, $"using the imported base model {imported}"));
            return (HfCheckpoint.Load(imported).Freeze(), ByteBpeTokenizer.Load(Path.Combine(imported, "tokenizer.json")), new BaseInfo(0, double.NaN, 0), true);
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
        var tokenizer = ByteBpeTokenizer.Train(old.Train, spec.VocabSize);
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
        // Written to a temporary directory and moved into place whole: an interrupted run leaves no half-cached base.
        var partial = directory + ".partial";
        if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        HfCheckpoint.Save(model, partial);
        tokenizer.Save(Path.Combine(partial, "tokenizer.json"));
        var info = new BaseInfo(bestStep, bestScore, seconds);
        File.WriteAllText(Path.Combine(partial, "base.json"), JsonSerializer.Serialize(info));
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        Directory.Move(partial, directory);
        return (model, tokenizer, info, false);
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
        return Convert.ToHexString(hash.GetHashAndReset())[..16].ToLowerInvariant();
    }

    private static (double Seconds, long BestStep, double BestScore) PretrainKeepingBest(
        Decoder model, PackedSequences packed, PhaseSpec phase, long seed, Func<double> score,
        IProgress<ExperimentProgress>? progress, CancellationToken cancellation)
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
            progress?.Report(new("pretrain", "base", step + 1, phase.Steps, result.Loss, phase.TokensPerStep * (step + 1) / trainSeconds));
            if ((step + 1) % phase.EvaluateEvery != 0 && step + 1 != phase.Steps) continue;
            double current = score();
            progress?.Report(new("pretrain", "base", step + 1, phase.Steps, result.Loss, 0, $"step {step + 1}: score {current:0.000}"));
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
