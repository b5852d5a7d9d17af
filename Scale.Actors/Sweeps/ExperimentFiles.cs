using System.Reflection;
using Akka.Configuration;
using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Experiments;

namespace Scale.Actors.Sweeps;

/// <summary>Reads experiment definitions in HOCON (hocon/experiments/*.hocon, embedded in `scale`, or any file).</summary>
internal static class ExperimentFiles
{
    public static IReadOnlyList<string> BuiltIn =>
        Assembly.GetExecutingAssembly().GetManifestResourceNames()
            .Where(n => n.StartsWith("experiments/", StringComparison.Ordinal))
            .Select(n => Path.GetFileNameWithoutExtension(n["experiments/".Length..])).Order().ToList();

    /// <summary>A built-in name (bio, bio-ko, bio-qa, bio-validation, text) or a path to a .hocon file.</summary>
    public static ExperimentSpec Load(string nameOrPath)
    {
        if (File.Exists(nameOrPath)) return Parse(File.ReadAllText(nameOrPath), nameOrPath, Path.GetDirectoryName(Path.GetFullPath(nameOrPath)));
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream($"experiments/{nameOrPath}.hocon")
            ?? throw new ArgumentException($"No experiment '{nameOrPath}': neither a file nor a built-in ({string.Join(", ", BuiltIn)}).");
        using var reader = new StreamReader(stream);
        return Parse(reader.ReadToEnd(), $"built-in experiment '{nameOrPath}'");
    }

    private static readonly Dictionary<string, string[]> Known = new()
    {
        [""] = ["name", "seed", "vocab-size", "model", "old", "new", "pretrain", "continual", "methods", "scale", "lora", "route", "freeze", "qa", "tokenizer", "suites"],
        ["suites"] = ["old", "new", "every-evaluation"],
        ["tokenizer"] = ["covers-new"],
        ["model"] = ["hidden-size", "layers", "heads", "kv-heads", "head-dim", "ffn", "rope-theta", "norm-eps", "tied"],
        ["old"] = ["kind", "language", "people", "renderings", "world-seed", "folder", "corpus", "held-out-fraction", "calibration-fraction"],
        ["new"] = ["kind", "language", "people", "renderings", "world-seed", "folder", "corpus", "held-out-fraction"],
        ["pretrain"] = ["steps", "batch", "sequence-length", "learning-rate", "warmup", "evaluate-every"],
        ["continual"] = ["steps", "batch", "sequence-length", "learning-rate", "warmup", "evaluate-every"],
        ["qa"] = ["task0", "measure", "passes"],
        ["qa.task0"] = ["steps", "batch", "sequence-length", "learning-rate", "warmup", "evaluate-every"],
        // The method settings an experiment file may give (scale.*, lora.*, route.*): TrialPlanner's table names them.
        ["scale"] = SettingsIn("scale"),
        ["lora"] = SettingsIn("lora"),
        ["route"] = SettingsIn("route"),
        ["freeze"] = SettingsIn("freeze"),
    };

    private static string[] SettingsIn(string section)
        => TrialPlanner.ExperimentKeys.Keys.Where(k => k.StartsWith(section + ".", StringComparison.Ordinal)).Select(k => k[(section.Length + 1)..]).ToArray();

    /// <summary>The file's method settings by sweep key; a list (lora.targets) becomes its items joined by commas.</summary>
    private static IReadOnlyDictionary<string, string> Settings(Config c, string source, string prefix)
    {
        var settings = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (path, key) in TrialPlanner.ExperimentKeys)
        {
            if (!c.HasPath(path)) continue;
            try
            {
                var value = c.GetValue(path);
                settings[key] = value.IsArray() ? string.Join(",", value.GetArray().Select(v => v.GetString())) : value.GetString();
            }
            catch (Exception e) when (e is FormatException or InvalidCastException or Akka.Configuration.ConfigurationException)
            {
                throw new ArgumentException($"{source}: '{prefix}{path}' has the wrong type ({e.Message.Split('\n')[0]}).");
            }
        }
        return settings;
    }

    /// <summary>An experiment file's text; its suites' relative paths are from <paramref name="baseDirectory"/> (null: the current directory).</summary>
    public static ExperimentSpec Parse(string text, string source, string? baseDirectory = null)
    {
        var root = Hocon.Parse(text, source);
        if (!root.HasPath("experiment")) throw new ArgumentException($"{source}: no 'experiment' block.");
        return FromConfig(root.GetConfig("experiment"), source, "", baseDirectory);
    }

    /// <summary>An experiment block; <paramref name="prefix"/> names where it sits in its file, for error messages.</summary>
    public static ExperimentSpec FromConfig(Config c, string source, string prefix, string? baseDirectory = null)
    {
        foreach (var (section, keys) in Known)
        {
            var block = section == "" ? c : c.HasPath(section) ? c.GetConfig(section) : null;
            if (block?.Root.GetObject() is not { } obj) continue;
            foreach (var key in obj.Items.Keys)
                if (!keys.Contains(key))
                    throw new ArgumentException($"{source}: unknown key '{prefix}{(section == "" ? "" : section + ".")}{key}'; allowed: {string.Join(", ", keys)}.");
        }
        T Get<T>(string path, Func<string, T> read, T fallback)
        {
            if (!c.HasPath(path)) return fallback;
            try
            {
                return read(path);
            }
            catch (Exception e) when (e is FormatException or InvalidCastException or OverflowException or Akka.Configuration.ConfigurationException)
            {
                throw new ArgumentException($"{source}: '{prefix}{path}' has the wrong type ({e.Message.Split('\n')[0]}).");
            }
        }
        int Int(string path, int fallback) => Get(path, p => c.GetInt(p), fallback);
        double Double(string path, double fallback) => Get(path, p => c.GetDouble(p), fallback);
        string Str(string path, string fallback) => Get(path, p => c.GetString(p), fallback);
        DataSpec Data(string side) => new()
        {
            Kind = Str($"{side}.kind", "bio"),
            Language = Str($"{side}.language", "english") switch
            {
                "english" => BioLanguage.English,
                "korean" => BioLanguage.Korean,
                var other => throw new ArgumentException($"{source}: {side}.language must be english or korean, got '{other}'."),
            },
            People = Int($"{side}.people", 200),
            Renderings = Int($"{side}.renderings", 20),
            WorldSeed = Int($"{side}.world-seed", 1),
            Folder = c.HasPath($"{side}.folder") ? c.GetString($"{side}.folder") : null,
            Corpus = c.HasPath($"{side}.corpus") ? c.GetString($"{side}.corpus") : null,
            HeldOutFraction = Double($"{side}.held-out-fraction", 0.1),
            CalibrationFraction = c.HasPath($"{side}.calibration-fraction") ? Double($"{side}.calibration-fraction", 0) : null,
        };
        PhaseSpec Phase(string name, PhaseSpec? fallback = null)
        {
            fallback ??= new PhaseSpec();
            return new()
            {
                Steps = Int($"{name}.steps", fallback.Steps), Batch = Int($"{name}.batch", fallback.Batch),
                SequenceLength = Int($"{name}.sequence-length", fallback.SequenceLength),
                LearningRate = Double($"{name}.learning-rate", fallback.LearningRate), WarmupSteps = Int($"{name}.warmup", fallback.WarmupSteps),
                EvaluateEvery = Int($"{name}.evaluate-every", fallback.EvaluateEvery),
            };
        }
        QaSpec? Qa()
        {
            if (!c.HasPath("qa")) return null;
            var qa = new QaSpec();
            return qa with
            {
                Task0 = Phase("qa.task0", qa.Task0),
                Measure = Str("qa.measure", "held-out") switch
                {
                    "held-out" => QaMeasure.HeldOut,
                    "trained" => QaMeasure.Trained,
                    var other => throw new ArgumentException($"{source}: {prefix}qa.measure must be held-out or trained, got '{other}'."),
                },
                Passes = Int("qa.passes", qa.Passes),
            };
        }
        SuitesSpec? Suites()
        {
            if (!c.HasPath("suites")) return null;
            IReadOnlyList<TaskSpec> Side(string side)
                => Get($"suites.{side}", p => c.GetStringList(p), [])
                    .Select(entry => TaskCards.Entry(entry, baseDirectory ?? Directory.GetCurrentDirectory(), $"{source}: {prefix}suites.{side}")).ToList();
            return new SuitesSpec { Old = Side("old"), New = Side("new"), EveryEvaluation = Get("suites.every-evaluation", p => c.GetBoolean(p), false) };
        }
        var defaults = new ExperimentSpec();
        try
        {
            return new ExperimentSpec
            {
                Name = Str("name", "experiment"),
                Seed = Int("seed", 1),
                VocabSize = Int("vocab-size", 2048),
                Model = defaults.Model with
                {
                    HiddenSize = Int("model.hidden-size", defaults.Model.HiddenSize),
                    NumLayers = Int("model.layers", defaults.Model.NumLayers),
                    NumHeads = Int("model.heads", defaults.Model.NumHeads),
                    NumKvHeadsOrNull = c.HasPath("model.kv-heads") ? Int("model.kv-heads", 0) : null,
                    HeadDimOrNull = c.HasPath("model.head-dim") ? Int("model.head-dim", 0) : null,
                    IntermediateSize = Int("model.ffn", defaults.Model.IntermediateSize),
                    RopeTheta = Double("model.rope-theta", defaults.Model.RopeTheta),
                    RmsNormEps = Double("model.norm-eps", defaults.Model.RmsNormEps),
                    TieWordEmbeddings = Get("model.tied", p => c.GetBoolean(p), false),
                },
                Old = Data("old"),
                New = Data("new"),
                Pretrain = Phase("pretrain"),
                Continual = Phase("continual"),
                Qa = Qa(),
                Suites = Suites(),
                TokenizerCoversNew = Get("tokenizer.covers-new", p => c.GetBoolean(p), false),
                Methods = Get("methods", p => (IReadOnlyList<string>)c.GetStringList(p).ToList(), defaults.Methods),
                Settings = Settings(c, source, prefix),
            }.Validate(requireFolders: false, checkLimits: false);
        }
        catch (ArgumentException e) when (!e.Message.StartsWith(source, StringComparison.Ordinal))
        {
            throw new ArgumentException($"{source}: {e.Message}");
        }
    }
}
