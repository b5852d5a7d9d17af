using System.Text.RegularExpressions;
using Akka.Configuration;
using Scale.Model;
using Scale.Model.Experiments;

namespace Scale.Actors.Sweeps;

/// <summary>A sweep as its file defines it: the experiment (base, old and new data), the trials, and how they are run.</summary>
internal sealed record SweepDefinition
{
    public required string Name { get; init; }
    public required ExperimentSpec Experiment { get; init; }
    public required IReadOnlyList<TrialSpec> Trials { get; init; }
    public int MaxConcurrent { get; init; } = 1;
    /// <summary>Retries a trial gets after a failed attempt, each from its last good checkpoint.</summary>
    public int RetryBudget { get; init; } = 2;
    public int CheckpointEvery { get; init; } = 25;
    /// <summary>Steps between a trial's scores during training (journaled, drawn as curves); 0: scored only at the end.</summary>
    public int EvaluateEvery { get; init; }
    /// <summary>The most trials the sweep may have (the file's `max-trials`): a grid that multiplies out beyond it is refused.</summary>
    public int MaxTrials { get; init; } = DefaultMaxTrials;
    public const int DefaultMaxTrials = 1000;
    /// <summary>
    /// Routing rules to score every trained SCALE trial under, besides its own answer (an evaluation-only axis): one
    /// trained expansion gives a row per rule, at no training cost. Canonical text, e.g. "cosine:0.5".
    /// </summary>
    public IReadOnlyList<string> Routing { get; init; } = [];
    /// <summary>
    /// Whether trials on one device that read the same batches and keep the base's stream below their first W12 (Preserve,
    /// Adapt and Route with W12 only above some blocks) train in lock-step, sharing the base's forward pass (the file's
    /// `lock-step`, on by default). Their results are the same bits either way: it only saves time.
    /// </summary>
    public bool LockStep { get; init; } = true;
    /// <summary>The early-stopping scheduler (the file's `scheduler` block; null: every trial trains to its end).</summary>
    public SchedulerSpec? Scheduler { get; init; }
    /// <summary>Where the definition came from (file path or built-in name), for messages.</summary>
    public string Source { get; init; } = "";

    /// <summary>
    /// Trials that may run at once on a thread budget of <paramref name="threads"/>: max-concurrent, bounded by the budget
    /// (each running trial needs a thread), except in lock-step, where every trial of the sweep can join a group: members
    /// wait for each other's steps, so a group of K computes one base forward (on the whole budget) and K expansions, and
    /// max-concurrent sets K.
    /// </summary>
    public int ConcurrentTrials(int threads) => EveryTrialInLockStep ? MaxConcurrent : Math.Min(MaxConcurrent, threads);

    /// <summary>Whether lock-step is on and every trial can join a group (its original stream is the base's below some block).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool EveryTrialInLockStep
        => LockStep && Trials.All(t => PlanFor(t) is var plan && plan.Method.SharesBaseForward(Experiment.Model.NumLayers) && plan.Options.AccumulationSteps == 1);

    /// <summary>
    /// A trial's typed plan from its settings (strings only in the sweep file, the journal and the wire), planned once per
    /// definition and trial: every later call (lock-step, slots, the start command, each attempt) reads the same plan.
    /// </summary>
    public TrialPlan PlanFor(TrialSpec trial)
        => Planned.GetValue(this, _ => new()).GetOrAdd(PlanKey(trial), _ => TrialPlanner.Plan(Experiment, trial.Method, trial.Parameters, CheckpointEvery, EvaluateEvery));

    /// <summary>Plans by definition instance (a <c>with</c> copy is planned afresh) and by the trial's id, method and settings.</summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<SweepDefinition, System.Collections.Concurrent.ConcurrentDictionary<string, TrialPlan>> Planned = new();

    private static string PlanKey(TrialSpec trial)
        => string.Join("\n", [trial.Id, trial.Method, .. trial.Parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}")]);

    public StartSweep StartCommand => new(Name, Trials, MaxConcurrent, RetryBudget)
    {
        Fingerprint = Fingerprint, Scheduler = Scheduler, PlannedSteps = Trials.ToDictionary(t => t.Id, t => (long)PlanFor(t).Phase.Steps),
    };

    /// <summary>
    /// Checks a definition as fully as a sweep file is checked (for one that arrives over the wire, before anything of
    /// it is persisted): the name and every trial id are safe path segments, ids are unique, the counts are in range,
    /// the experiment validates, every trial plans and every routing rule parses. Throws ArgumentException with the reason.
    /// </summary>
    public SweepDefinition Validate()
    {
        if (!SweepFiles.NamePattern().IsMatch(Name ?? "")) throw new ArgumentException($"sweep name '{Name}' must be lower-case letters, digits, '-' and '_' (at most 64).");
        if (Trials is null || Trials.Count == 0) throw new ArgumentException($"sweep '{Name}' has no trials.");
        foreach (var trial in Trials) Trainers.SweepPaths.Segment(trial.Id ?? "", "trial id");
        if (Trials.Select(t => t.Id).Distinct().Count() != Trials.Count) throw new ArgumentException($"sweep '{Name}' has two trials with one id.");
        if (MaxConcurrent < 1) throw new ArgumentException($"max-concurrent must be at least 1, got {MaxConcurrent}.");
        if (RetryBudget < 0) throw new ArgumentException($"retry-budget must be 0 or more, got {RetryBudget}.");
        if (CheckpointEvery < 1) throw new ArgumentException($"checkpoint-every must be at least 1, got {CheckpointEvery}.");
        if (EvaluateEvery < 0) throw new ArgumentException($"evaluate-every must be 0 or more, got {EvaluateEvery}.");
        if (MaxTrials < 1) throw new ArgumentException($"max-trials must be at least 1, got {MaxTrials}.");
        if (Trials.Count > MaxTrials)
            throw new ArgumentException($"sweep '{Name}' has {Trials.Count:N0} trials, above its max-trials of {MaxTrials:N0}; raise max-trials in the sweep to run it.");
        if (Experiment is null) throw new ArgumentException($"sweep '{Name}' has no experiment.");
        Experiment.Validate(requireFolders: false, checkLimits: false).CheckFinal(MaxConcurrent);
        foreach (var rule in Routing ?? []) Scale.Model.Upscaling.RoutingSpec.Parse(rule);
        foreach (var trial in Trials) PlanFor(trial);
        return this;
    }

    /// <summary>
    /// Refuses to resume a sweep that was started from another definition (a different experiment or checkpoint interval —
    /// its <see cref="Fingerprint"/> — or other trials): its finished trials would not be comparable. One check for both
    /// paths that resume a sweep: `scale run` on this machine and the cluster's sweep manager.
    /// </summary>
    public void CheckResumes(string? startedFingerprint, IReadOnlyCollection<string> startedTrials, string where)
    {
        if (startedFingerprint is not null && startedFingerprint != Fingerprint)
            throw new ArgumentException(
                $"Sweep '{Name}' {where} was started with a different experiment or checkpoint interval than {Source} now gives " +
                $"(fingerprint {startedFingerprint}, now {Fingerprint}). Its finished trials would not be comparable: give the changed sweep a new name, or use another --data-dir.");
        var file = Trials.Select(t => t.Id).ToHashSet();
        if (file.SetEquals(startedTrials)) return;
        throw new ArgumentException(
            $"Sweep '{Name}' {where} was started from a different definition ({file.Except(startedTrials).Count()} trials new in the file, " +
            $"{startedTrials.Except(file).Count()} no longer in it). A sweep's trials are fixed when it starts: give the changed sweep a new name, or use another --data-dir.");
    }

    /// <summary>A hash of what every trial's result depends on besides its own settings: the experiment (base, data, phases) and the checkpoint interval (and the scheduler, which decides where trials stop).</summary>
    public string Fingerprint
    {
        get
        {
            // Each form is what sweeps of its time hashed: a sweep without routing, scores during training or a scheduler keeps its old fingerprint.
            // The task suites are left out: they add scores and change no training, so a sweep resumes with suites added or changed
            // (its remaining trials are scored on them, its finished ones keep what they had).
            var trained = Experiment with { Suites = null };
            object hashed = Scheduler is not null
                ? new { experiment = trained, checkpoint_every = CheckpointEvery, routing = Routing, evaluate_every = EvaluateEvery, scheduler = Scheduler }
                : Routing.Count == 0 && EvaluateEvery == 0
                    ? (object)new { experiment = trained, checkpoint_every = CheckpointEvery }
                    : new { experiment = trained, checkpoint_every = CheckpointEvery, routing = Routing, evaluate_every = EvaluateEvery };
            var bytes = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(hashed, hashed.GetType());
            return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(bytes))[..16].ToLowerInvariant();
        }
    }
}

/// <summary>
/// Reads sweep files (hocon/sweeps/*.hocon, embedded in `scale`, or any file). Unknown keys, wrong types and
/// impossible combinations are rejected before anything runs, naming the file, the key and the reason.
/// </summary>
internal static partial class SweepFiles
{
    public static IReadOnlyList<string> BuiltIn => Resources("sweeps/");

    internal static IReadOnlyList<string> Resources(string folder) =>
        typeof(SweepFiles).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(folder, StringComparison.Ordinal))
            .Select(n => Path.GetFileNameWithoutExtension(n[folder.Length..])).Order().ToList();

    internal static string? ReadResource(string name)
    {
        using var stream = typeof(SweepFiles).Assembly.GetManifestResourceStream(name);
        if (stream is null) return null;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>A path to a .hocon file, or the name of a built-in sweep (quickstart, bio, bio-ko, bio-qa, validation).</summary>
    public static SweepDefinition Load(string nameOrPath)
    {
        if (File.Exists(nameOrPath)) return Parse(File.ReadAllText(nameOrPath), nameOrPath, Path.GetDirectoryName(Path.GetFullPath(nameOrPath))!);
        var text = ReadResource($"sweeps/{nameOrPath}.hocon")
            ?? throw new ArgumentException($"No sweep '{nameOrPath}': neither a file nor a built-in ({string.Join(", ", BuiltIn)}).");
        return Parse(text, $"built-in sweep '{nameOrPath}'", Directory.GetCurrentDirectory());
    }

    private static readonly string[] SweepKeys = ["name", "experiment", "base", "methods", "search", "routing", "max-concurrent", "retry-budget", "checkpoint-every", "evaluate-every", "max-trials", "lock-step", "scheduler"];
    private static readonly string[] SchedulerKeys = ["kind", "metric", "mode", "grace-steps", "reduction"];
    private static readonly string[] SearchKeys = ["methods", "fixed", "grid", "random", "samples", "seed"];
    private static readonly string[] AxisKeys = ["min", "max", "log", "integer"];

    [GeneratedRegex("^[a-z0-9][a-z0-9_-]{0,63}$")]
    internal static partial Regex NamePattern();

    /// <summary>The `scheduler` block: `kind = asha`, the metric and its direction, the first rung and the reduction factor.</summary>
    private static SchedulerSpec ParseScheduler(Config sweep, SweepDefinition definition, string source)
    {
        const string where = "sweep.scheduler.";
        if (!sweep.GetValue("scheduler").IsObject()) throw new ArgumentException($"{source}: 'sweep.scheduler' must be a block: scheduler {{ kind = asha, metric = acquisition, grace-steps = 50 }}.");
        var c = sweep.GetConfig("scheduler");
        Hocon.RejectUnknown(c, SchedulerKeys, source, where);
        string Fail(string key, string reason) => throw new ArgumentException($"{source}: '{where}{key}': {reason}");
        var kind = Hocon.Get(c, "kind", k => c.GetString(k), SchedulerSpec.AshaKind, source, where);
        if (kind != SchedulerSpec.AshaKind) Fail("kind", $"'{kind}' is not a scheduler: the one there is is 'asha'.");
        var metric = Hocon.Get(c, "metric", k => c.GetString(k), null, source, where)
                     ?? Fail("metric", $"is required: the score during training to rank trials on, one of {string.Join(", ", SchedulerSpec.Metrics)}.");
        if (!SchedulerSpec.Metrics.Contains(metric)) Fail("metric", $"'{metric}' is not one of {string.Join(", ", SchedulerSpec.Metrics)}.");
        // By default the better direction of the metric: less forgetting, lower perplexity, more of anything else.
        bool perplexity = !definition.Experiment.Old.IsBio;   // text experiments are scored on held-out perplexity
        bool lower = metric == "forgetting" || (perplexity && !metric.EndsWith("first-token", StringComparison.Ordinal));
        var mode = Hocon.Get(c, "mode", k => c.GetString(k), lower ? "min" : "max", source, where);
        if (mode is not ("max" or "min")) Fail("mode", $"'{mode}' must be max or min.");
        int grace = Hocon.Get(c, "grace-steps", k => c.GetInt(k), 0, source, where);
        if (definition.EvaluateEvery < 1) Fail("grace-steps", "a scheduler ranks the scores during training: set sweep.evaluate-every too.");
        if (grace < 1) Fail("grace-steps", $"is required and must be at least 1 (a multiple of evaluate-every, {definition.EvaluateEvery}).");
        if (grace % definition.EvaluateEvery != 0)
            Fail("grace-steps", $"{grace} is not a multiple of evaluate-every ({definition.EvaluateEvery}): trials are scored only at multiples of it.");
        int reduction = Hocon.Get(c, "reduction", k => c.GetInt(k), 3, source, where);
        if (reduction < 2) Fail("reduction", $"must be at least 2, got {reduction}.");
        return new SchedulerSpec { Kind = kind, Metric = metric, Mode = mode, GraceSteps = grace, Reduction = reduction };
    }

    public static SweepDefinition Parse(string text, string source, string baseDirectory)
    {
        var root = Hocon.Parse(text, source);
        if (!root.HasPath("sweep")) throw new ArgumentException($"{source}: no 'sweep' block.");
        var c = root.GetConfig("sweep");
        Hocon.RejectUnknown(c, SweepKeys, source, "sweep.");
        string Fail(string key, string reason) => throw new ArgumentException($"{source}: 'sweep.{key}': {reason}");

        var name = Hocon.Get(c, "name", k => c.GetString(k), null, source, "sweep.") ?? Fail("name", "is required (lower-case letters, digits, '-' and '_').");
        if (!NamePattern().IsMatch(name)) Fail("name", $"'{name}' must be lower-case letters, digits, '-' and '_' (at most 64).");

        ExperimentSpec experiment;
        if (!c.HasPath("experiment")) Fail("experiment", "is required: a built-in experiment (bio, bio-ko, bio-qa, bio-validation), a file, or an inline block.");
        var value = c.GetValue("experiment");
        if (value.IsObject())
        {
            experiment = ExperimentFiles.FromConfig(c.GetConfig("experiment"), source, "sweep.experiment.", baseDirectory);
        }
        else
        {
            var reference = c.GetString("experiment");
            var file = Path.Combine(baseDirectory, reference);
            experiment = File.Exists(file) ? ExperimentFiles.Load(file) : ExperimentFiles.Load(reference);
        }
        if (c.HasPath("base"))
        {
            // An imported Hugging Face model as the base, instead of pre-training one (relative paths: from the sweep file).
            var reference = Hocon.Get(c, "base", k => c.GetString(k), "", source, "sweep.");
            var directory = Path.IsPathRooted(reference) ? reference : Path.Combine(baseDirectory, reference);
            try
            {
                experiment = experiment.WithBaseModel(directory);
            }
            catch (Exception e) when (e is ArgumentException or Scale.Model.Transformer.InvalidCheckpointException)
            {
                Fail("base", e.Message);
            }
        }
        if (!experiment.Old.IsBio && (experiment.Old.Folder ?? experiment.Old.Corpus) is null || (experiment.New.Folder ?? experiment.New.Corpus) is null && !experiment.New.IsBio)
            Fail("experiment", "a text experiment in a sweep must name both corpora (old.folder or old.corpus, new.folder or new.corpus).");

        int Int(string key, int fallback, int min)
        {
            int v = Hocon.Get(c, key, k => c.GetInt(k), fallback, source, "sweep.");
            return v >= min ? v : throw new ArgumentException($"{source}: 'sweep.{key}' must be at least {min}, got {v}.");
        }
        var routing = new List<string>();
        foreach (var rule in Hocon.Get(c, "routing", k => (IReadOnlyList<string>)c.GetStringList(k).ToList(), [], source, "sweep."))
        {
            try
            {
                routing.Add(Scale.Model.Upscaling.RoutingSpec.Parse(rule).ToString());
            }
            catch (ArgumentException e)
            {
                Fail("routing", e.Message);
            }
        }
        var definition = new SweepDefinition
        {
            Name = name, Experiment = experiment, Trials = [], Source = source, Routing = routing.Distinct().ToList(),
            MaxConcurrent = Int("max-concurrent", 1, 1), RetryBudget = Int("retry-budget", 2, 0), CheckpointEvery = Int("checkpoint-every", 25, 1),
            EvaluateEvery = Int("evaluate-every", 0, 0), MaxTrials = Int("max-trials", SweepDefinition.DefaultMaxTrials, 1),
            LockStep = Hocon.Get(c, "lock-step", k => c.GetBoolean(k), true, source, "sweep."),
        };
        if (c.HasPath("scheduler")) definition = definition with { Scheduler = ParseScheduler(c, definition, source) };

        var trials = new List<TrialSpec>();
        long planned = 0;
        // Counted before a grid is multiplied out, so that a grid of millions is refused without building it.
        void Count(string where, long more)
        {
            planned = more > long.MaxValue - planned ? long.MaxValue : planned + more;
            if (planned > definition.MaxTrials)
                throw new ArgumentException($"{source}: '{where}' brings the sweep to {planned:N0} trials, above max-trials ({definition.MaxTrials:N0}); " +
                                            $"set sweep.max-trials = {planned} (or more) to run a sweep this large.");
        }
        void Add(string where, string method, IReadOnlyDictionary<string, string> parameters)
        {
            var trial = new TrialSpec(SearchSpace.TrialId(method, parameters), method, parameters);
            try
            {
                definition.PlanFor(trial);
            }
            catch (ArgumentException e)
            {
                var settings = parameters.Count == 0 ? "" : " (" + string.Join(", ", parameters.OrderBy(p => p.Key).Select(p => $"{p.Key}={p.Value}")) + ")";
                throw new ArgumentException($"{source}: '{where}': trial {method}{settings}: {e.Message}");
            }
            if (trials.All(t => t.Id != trial.Id)) trials.Add(trial);
        }
        IReadOnlyList<string> Methods(Config block, string where)
        {
            var methods = Hocon.Get(block, "methods", k => (IReadOnlyList<string>)block.GetStringList(k).ToList(), [], source, where);
            foreach (var m in methods)
                if (!MethodSpec.PresetNames.Contains(m))
                    throw new ArgumentException($"{source}: '{where}methods': unknown method '{m}'; choose from {string.Join(", ", MethodSpec.PresetNames)}.");
            return methods;
        }
        var plain = Methods(c, "sweep.");
        Count("sweep.methods", plain.Count);
        foreach (var method in plain) Add("sweep.methods", method, new Dictionary<string, string>());

        if (c.HasPath("search"))
        {
            if (!c.GetValue("search").IsObject()) Fail("search", "must be a block of named searches, e.g. search { widths { methods = [route], grid { heads_up = [1, 2] } } }.");
            foreach (var searchName in c.GetConfig("search").Root.GetObject().Items.Keys)
            {
                var where = $"sweep.search.{searchName}.";
                var block = c.GetConfig($"search.{searchName}");
                Hocon.RejectUnknown(block, SearchKeys, source, where);
                var methods = Methods(block, where);
                if (methods.Count == 0) throw new ArgumentException($"{source}: '{where}methods': a search needs at least one method.");
                var space = new SearchSpace
                {
                    Fixed = Strings(block, "fixed", source, where),
                    Grid = block.HasPath("grid") ? block.GetConfig("grid").Root.GetObject().Items.Keys.ToDictionary(
                        k => k, k => Hocon.Get(block, $"grid.{k}", p => (IReadOnlyList<string>)block.GetStringList(p).ToList(), [], source, where))
                        : new Dictionary<string, IReadOnlyList<string>>(),
                    Random = block.HasPath("random") ? block.GetConfig("random").Root.GetObject().Items.Keys.Select(k =>
                    {
                        var axis = block.GetConfig($"random.{k}");
                        Hocon.RejectUnknown(axis, AxisKeys, source, $"{where}random.{k}.");
                        if (!axis.HasPath("min") || !axis.HasPath("max"))
                            throw new ArgumentException($"{source}: '{where}random.{k}': needs min and max.");
                        return new RandomAxis(k, Hocon.Get(axis, "min", p => axis.GetDouble(p), 0.0, source, $"{where}random.{k}."),
                                              Hocon.Get(axis, "max", p => axis.GetDouble(p), 0.0, source, $"{where}random.{k}."),
                                              Hocon.Get(axis, "log", p => axis.GetBoolean(p), false, source, $"{where}random.{k}."),
                                              Hocon.Get(axis, "integer", p => axis.GetBoolean(p), false, source, $"{where}random.{k}."));
                    }).ToList() : [],
                    Samples = Hocon.Get(block, "samples", p => block.GetInt(p), 1, source, where),
                    Seed = Hocon.Get(block, "seed", p => block.GetLong(p), 0L, source, where),
                };
                IReadOnlyList<IReadOnlyDictionary<string, string>> points;
                Count(where.TrimEnd('.'), space.Size > long.MaxValue / methods.Count ? long.MaxValue : methods.Count * space.Size);
                try
                {
                    points = space.Expand();
                }
                catch (ArgumentException e)
                {
                    throw new ArgumentException($"{source}: '{where.TrimEnd('.')}': {e.Message}");
                }
                foreach (var method in methods)
                    foreach (var point in points)
                        Add(where.TrimEnd('.'), method, point);
            }
        }
        if (trials.Count == 0) Fail("methods", "the sweep has no trials: list methods, or add a search.");
        try
        {
            experiment.CheckFinal(definition.MaxConcurrent);
        }
        catch (ArgumentException e)
        {
            Fail("experiment", e.Message);
        }
        return definition with { Trials = trials };
    }

    private static IReadOnlyDictionary<string, string> Strings(Config block, string key, string source, string where)
    {
        if (!block.HasPath(key)) return new Dictionary<string, string>();
        var inner = block.GetConfig(key);
        return inner.Root.GetObject().Items.Keys.ToDictionary(k => k, k => Hocon.Get(inner, k, p => inner.GetString(p), "", source, $"{where}{key}."));
    }
}

/// <summary>HOCON reading with errors that name the file and the key.</summary>
internal static class Hocon
{
    /// <summary>
    /// Objects and lists nested deeper than this are refused before parsing: the parser recurses per level, and a stack
    /// overflow ends the process with nothing to catch. Scale's own files nest four levels.
    /// </summary>
    public const int MaxDepth = 64;

    public static Config Parse(string text, string source)
    {
        CheckShape(text, source);
        try
        {
            return ConfigurationFactory.ParseString(text);
        }
        catch (Exception e) when (e is FormatException or ConfigurationException)
        {
            throw new ArgumentException($"{source}: not valid HOCON ({e.Message.Split('\n')[0]}).");
        }
    }

    /// <summary>
    /// Refuses, with the line, nesting deeper than <see cref="MaxDepth"/> and HOCON's <c>include</c> (a sweep or experiment
    /// file stands alone: an include would read another file, or a URL, on whichever node parses it). Quoted strings and
    /// comments are skipped, so the word inside a value or a comment is not an include.
    /// </summary>
    private static void CheckShape(string text, string source)
    {
        int depth = 0, line = 1;
        bool statementStart = true;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c == '\n') { line++; statementStart = true; continue; }
            if (c == '#' || (c == '/' && i + 1 < text.Length && text[i + 1] == '/'))
            {
                while (i + 1 < text.Length && text[i + 1] != '\n') i++;
                continue;
            }
            if (c == '"')
            {
                bool triple = string.CompareOrdinal(text, i, "\"\"\"", 0, 3) == 0;
                int end = triple ? text.IndexOf("\"\"\"", i + 3, StringComparison.Ordinal) : QuotedEnd(text, i);
                if (end < 0) throw new ArgumentException($"{source}:{line}: a quoted string is not closed on its line.");
                line += text.AsSpan(i, end - i).Count('\n');
                i = triple ? end + 2 : end;
                statementStart = false;
                continue;
            }
            if (char.IsWhiteSpace(c)) continue;
            if (c is '{' or '[')
            {
                if (++depth > MaxDepth)
                    throw new ArgumentException($"{source}:{line}: nested deeper than {MaxDepth} levels.");
                statementStart = true;
                continue;
            }
            if (c is '}' or ']') { depth--; statementStart = false; continue; }
            if (c == ',') { statementStart = true; continue; }
            if (statementStart && string.CompareOrdinal(text, i, "include", 0, 7) == 0
                && i + 7 < text.Length && (char.IsWhiteSpace(text[i + 7]) || text[i + 7] == '"'))
                throw new ArgumentException($"{source}:{line}: 'include' is not supported: a sweep or experiment file must stand alone.");
            statementStart = false;
        }
    }

    private static int QuotedEnd(string text, int open)
    {
        for (int j = open + 1; j < text.Length; j++)
        {
            if (text[j] == '\\') { j++; continue; }
            if (text[j] is '"' or '\n') return text[j] == '"' ? j : -1;
        }
        return -1;
    }

    public static void RejectUnknown(Config block, IReadOnlyList<string> keys, string source, string where)
    {
        if (block.Root.GetObject() is not { } obj) return;
        foreach (var key in obj.Items.Keys)
            if (!keys.Contains(key))
                throw new ArgumentException($"{source}: unknown key '{where}{key}'; allowed: {string.Join(", ", keys)}.");
    }

    public static T Get<T>(Config c, string path, Func<string, T> read, T fallback, string source, string where)
    {
        if (!c.HasPath(path)) return fallback;
        try
        {
            return read(path);
        }
        catch (Exception e) when (e is FormatException or InvalidCastException or OverflowException or ConfigurationException or NullReferenceException or NotSupportedException)
        {
            throw new ArgumentException($"{source}: '{where}{path}' has the wrong type ({e.Message.Split('\n')[0]}).");
        }
    }
}
