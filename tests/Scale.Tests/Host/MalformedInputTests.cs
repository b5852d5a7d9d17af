using System.IO.Compression;
using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Scale.Model.Transformer;
using Scale.Tests.Model;

namespace Scale.Tests.Host;

/// <summary>
/// Malformed input of every kind a user hands `scale` — sweep and experiment files, config.json, tokenizer.json,
/// safetensors, corpora, token shards, checkpoints, command-line flags — each run through the real command: it must
/// exit 2 with one line on stderr that names the problem, print no stack trace, and leave nothing half-written.
/// </summary>
public class MalformedInputTests
{
    /// <summary>What a case needs: a scratch directory to write its input into, and where outputs would go.</summary>
    internal sealed class Scratch(TempDirectory dir)
    {
        public string Data => dir.Combine("data");
        public string Out => dir.Combine("out");
        public string File(string name, string text)
        {
            var path = dir.Combine(name);
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
            System.IO.File.WriteAllText(path, text);
            return path;
        }
        public string Path(params string[] parts) => dir.Combine(parts);

        /// <summary>A tiny Hugging Face model directory (config.json, model.safetensors, tokenizer.json) for the model cases.</summary>
        public string Model(string name = "model")
        {
            var directory = dir.Combine(name);
            var tokenizer = ByteBpeTokenizer.Train(["Velmora Brint was born in Preasiburg.", "Gratrend works for Braigum Works."], 300);
            Directory.CreateDirectory(directory);
            tokenizer.Save(System.IO.Path.Combine(directory, "tokenizer.json"));
            using var model = Decoder.Create(Tiny.Mha with { VocabSize = tokenizer.VocabSize }, seed: 1);
            HfCheckpoint.Save(model, directory);
            return directory;
        }

        public string Sweep(string replace, string with) => File("sweep.hocon", SweepProcessTests.TinySweepText.Replace(replace, with));

        public string Experiment(string replace, string with)
            => File("experiment.hocon", Scale.Tests.Experiments.ExperimentTests.TinyBio.Replace(replace, with));
    }

    private static readonly Dictionary<string, (Func<Scratch, string[]> Arguments, string Message)> Cases = new()
    {
        // Sweep files.
        ["sweep-no-block"] = (s => Run(s, s.File("a.hocon", "experiment { name = x }")), "no 'sweep' block"),
        ["sweep-unparsable"] = (s => Run(s, s.File("a.hocon", "sweep { name = ")), "a.hocon"),
        ["sweep-no-name"] = (s => Run(s, s.Sweep("name = recover", "")), "'sweep.name'"),
        ["sweep-bad-name"] = (s => Run(s, s.Sweep("name = recover", "name = \"Bad Name\"")), "must be lower-case"),
        
        ["sweep-unknown-key"] = (s => Run(s, s.Sweep("max-concurrent = 1", "max-concurrent = 1\n colour = blue")), "colour"),
        ["sweep-unknown-method"] = (s => Run(s, s.Sweep("methods = [frozen, preserve, route, full]", "methods = [magic]")), "unknown method 'magic'"),
        ["sweep-no-trials"] = (s => Run(s, s.Sweep("methods = [frozen, preserve, route, full]", "methods = []")), "no trials"),
        ["sweep-zero-concurrency"] = (s => Run(s, s.Sweep("max-concurrent = 1", "max-concurrent = 0")), "'sweep.max-concurrent' must be at least 1"),
        ["sweep-negative-retries"] = (s => Run(s, s.Sweep("max-concurrent = 1", "max-concurrent = 1\n retry-budget = -1")), "retry-budget"),
        ["sweep-zero-checkpoint-every"] = (s => Run(s, s.Sweep("checkpoint-every = 5", "checkpoint-every = 0")), "checkpoint-every"),
        ["sweep-empty-grid-axis"] = (s => Run(s, s.Sweep("max-concurrent = 1", "max-concurrent = 1\n search { g { methods = [preserve], grid { lr = [] } } }")), "has no values"),
        ["sweep-grid-above-max-trials"] = (s => Run(s, s.Sweep("max-concurrent = 1",
            "max-concurrent = 1\n search { g { methods = [preserve], grid { lr = [" + string.Join(", ", Enumerable.Range(1, 101).Select(i => $"{i}e-4")) +
            "], warmup = [" + string.Join(", ", Enumerable.Range(0, 99)) + "] } } }")), "above max-trials"),
        ["sweep-bad-routing"] = (s => Run(s, s.Sweep("max-concurrent = 1", "max-concurrent = 1\n routing = [\"magic:3\"]")), "magic"),
        ["sweep-missing-experiment"] = (s => Run(s, s.File("a.hocon", "sweep { name = a, experiment = nonesuch, methods = [full] }")), "nonesuch"),
        ["sweep-random-without-max"] = (s => Run(s, s.Sweep("max-concurrent = 1", "max-concurrent = 1\n search { r { methods = [preserve], random { lr { min = 1e-4 } } } }")), "needs min and max"),
        ["sweep-bad-lr"] = (s => Run(s, s.Sweep("max-concurrent = 1", "max-concurrent = 1\n search { f { methods = [preserve], fixed { lr = abc } } }")), "abc"),
        ["sweep-unknown-setting"] = (s => Run(s, s.Sweep("max-concurrent = 1", "max-concurrent = 1\n search { f { methods = [preserve], fixed { colour = 3 } } }")), "colour"),
        ["sweep-missing-base"] = (s => Run(s, s.Sweep("max-concurrent = 1", "max-concurrent = 1\n base = nowhere")), "nowhere"),
        ["sweep-vocab-too-large"] = (s => Run(s, s.Sweep("vocab-size = 300", "vocab-size = 100000000")), "vocab-size 100,000,000 is above 262,144"),
        ["sweep-vocab-beyond-corpus"] = (s => Run(s, s.Sweep("vocab-size = 300", "vocab-size = 200000")), "more than the old data can teach"),
        ["sweep-too-many-people"] = (s => Run(s, s.Sweep("people = 4\n", "people = 2000000000\n")), "above 10,000,000"),
        ["sweep-too-many-renderings"] = (s => Run(s, s.Sweep("renderings = 6\n", "renderings = 2000000\n")), "renderings 2,000,000"),
        ["sweep-memory-estimate"] = (s => Run(s, s.Sweep("max-concurrent = 1",
            "max-concurrent = 1\n experiment.continual.batch = 100000\n experiment.continual.sequence-length = 4096")), "of memory"),
        // The widest model allowed, eight at once: its estimate passes 2^63 bytes and must not wrap to a number that fits.
        ["sweep-memory-estimate-overflow"] = (s => Run(s, s.Sweep("max-concurrent = 1",
            "max-concurrent = 8\n experiment.model.hidden-size = 1048576\n experiment.model.ffn = 1048576\n experiment.model.layers = 16384\n experiment.model.heads = 8")), "of memory"),
        // A width whose expansion (1.5 times) would not fit 32 bits.
        ["sweep-model-too-wide"] = (s => Run(s, s.Sweep("max-concurrent = 1",
            "max-concurrent = 1\n experiment.model.hidden-size = 2000000000")), "hidden_size 2,000,000,000 is above 1,048,576"),
        // A file stands alone: an include would read another file (or a URL) on whichever node parses it.
        ["sweep-include"] = (s => Run(s, s.File("a.hocon", "include \"/etc/hostname\"\nsweep { name = a, experiment = quickstart, methods = [full] }")), "a.hocon:1: 'include' is not supported"),
        // Nesting deep enough to overflow the parser's stack, which would end the process with nothing to catch.
        ["sweep-deep-nesting"] = (s => Run(s, s.File("a.hocon", "sweep {\n name = a\n x = " + new string('[', 200_000) + new string(']', 200_000) + "\n}")), "a.hocon:3: nested deeper than 64 levels"),
        // Remoting beyond loopback without TLS: anyone who reaches the port could join.
        ["seed-beyond-loopback-without-tls"] = (s => ["seed", "--bind", "0.0.0.0:0", "--seeds", "127.0.0.1:1", "--http", "off", "--data-dir", s.Data], "without TLS"),
        ["worker-beyond-loopback-without-tls"] = (s => ["worker", "--bind", "0.0.0.0:0", "--seeds", "127.0.0.1:1", "--http", "off", "--data-dir", s.Data], "without TLS"),
        // TLS trusting every public root: anyone with a certificate from a public CA could join.
        ["seed-tls-without-ca"] = (s => ["seed", "--tls-certificate", s.Data + "/node.pfx", "--http", "off", "--data-dir", s.Data], "needs --tls-ca"),
        ["cancel-without-cluster"] = (s => ["cancel", "quickstart"], "needs --cluster"),
        // An unclosed string must not end the check early and let the nesting after it through to the parser.
        ["sweep-unclosed-string-then-deep-nesting"] = (s => Run(s, s.File("a.hocon", "sweep {\n name = \"a\n x = " + new string('[', 200_000) + new string(']', 200_000) + "\n}")), "a.hocon:2: a quoted string is not closed"),
        ["sweep-text-without-folders"] = (s => Run(s, s.File("a.hocon", "sweep {\n name = a\n experiment {\n old { kind = text }\n new { kind = text }\n }\n methods = [full]\n}")), "must name both corpora"),
        // Experiment files and their flags.
        ["experiment-small-vocab"] = (s => Exp(s, s.Experiment("vocab-size = 320", "vocab-size = 100")), "vocab_size must be at least 257"),
        ["experiment-no-layers"] = (s => Exp(s, s.Experiment("layers = 2", "layers = 0")), "num_hidden_layers"),
        ["experiment-heads-not-dividing"] = (s => Exp(s, s.Experiment("heads = 2", "heads = 5")), "heads"),
        ["experiment-unknown-method"] = (s => [.. Exp(s, s.Experiment("seed = 3", "seed = 3")), "--methods", "full,magic"], "magic"),
        ["experiment-negative-threads"] = (s => [.. Exp(s, s.Experiment("seed = 3", "seed = 3")), "--threads", "-1"], "--threads"),
        ["experiment-bad-device"] = (s => [.. Exp(s, s.Experiment("seed = 3", "seed = 3")), "--devices", "gpu"], "Invalid device 'gpu'"),
        ["experiment-bad-precision"] = (s => [.. Exp(s, s.Experiment("seed = 3", "seed = 3")), "--precision", "fp8"], "Invalid precision 'fp8'"),
        ["experiment-missing"] = (s => ["experiment", s.Path("absent.hocon"), "--data-dir", s.Data], "absent.hocon"),
        // A name is a directory under the data directory that is removed before each method trains: one that leads
        // outside it is refused before anything is touched (the victim's file is still there: the snapshot is unchanged).
        ["experiment-name-outside-data-dir"] = (s =>
        {
            s.File("victim/full/keep.txt", "not Scale's");
            return Exp(s, s.Experiment("name = tiny", "name = \"../../victim\""));
        }, "not a safe name"),
        ["experiment-zero-steps"] = (s => Exp(s, s.Experiment("steps = 10", "steps = 0")), "continual.steps must be at least 1"),
        // config.json and the model's tensors.
        ["config-not-json"] = (s => Gen(s, Damage(s.Model(), "config.json", "{ not json")), "config.json"),
        ["config-unknown-family"] = (s => Gen(s, Edit(s.Model(), "config.json", "\"model_type\": \"llama\"", "\"model_type\": \"gpt-neo\"")), "gpt-neo"),
        ["config-unknown-rope"] = (s => Gen(s, Edit(s.Model(), "config.json", "\"rope_theta\"", "\"rope_scaling\": { \"rope_type\": \"yarn\", \"factor\": 4 }, \"rope_theta\"")), "yarn"),
        ["config-missing-width"] = (s => Gen(s, Edit(s.Model(), "config.json", "\"hidden_size\"", "\"hidden_size_x\"")), "hidden_size"),
        ["config-absent"] = (s => Gen(s, Remove(s.Model(), "config.json")), "config.json"),
        ["safetensors-cut-short"] = (s => Gen(s, Truncate(s.Model(), "model.safetensors", 100)), "model.safetensors"),
        ["safetensors-absent"] = (s => Gen(s, Remove(s.Model(), "model.safetensors")), "safetensors"),
        // tokenizer.json.
        ["tokenizer-not-json"] = (s => GenText(s, Damage(s.Model(), "tokenizer.json", "{ not json")), "tokenizer.json"),
        ["tokenizer-beyond-vocabulary"] = (s => GenText(s, Edit(s.Model(), "config.json", "\"vocab_size\": 3", "\"vocab_size\": 1")), "vocabulary"),
        // Corpora and token shards.
        ["corpus-invalid-utf8"] = (s => Tok(s, Bytes(s, "corpus/a.txt", [0x41, 0x42, 0xFF, 0x43])), "byte 2"),
        ["corpus-absent"] = (s => Tok(s, s.Path("nowhere")), "nowhere"),
        ["corpus-bad-gzip"] = (s => Tok(s, Bytes(s, "corpus/a.txt.gz", [1, 2, 3, 4, 5])), "a.txt.gz"),
        ["corpus-jsonl-not-json"] = (s => Tok(s, System.IO.Path.GetDirectoryName(s.File("corpus/a.jsonl", "{\"text\": \"fine\"}\nnot json\n"))!), "a.jsonl"),
        ["corpus-jsonl-no-text"] = (s => Tok(s, System.IO.Path.GetDirectoryName(s.File("corpus/a.jsonl", "{\"body\": \"no text field\"}\n"))!), "text"),
        ["tokenize-out-is-a-file"] = (s => ["tokenize", System.IO.Path.GetDirectoryName(s.File("corpus/a.txt", "hello"))!, "--model", s.Model(), "--out", s.File("out", "a file")], "out"),
        ["shard-cut-short"] = (s => ShardExperiment(s, shards => Truncate(shards, Directory.GetFiles(shards, "*.bin")[0], 3)), "cut short"),
        ["shard-outside-directory"] = (s => ShardExperiment(s, shards => Edit(shards, "index.json", "\"train-", "\"../train-")), "outside"),
        // Checkpoints.
        ["checkpoint-absent"] = (s => ["evaluate", s.Sweep("name = recover", "name = recover"), Preserve, "--checkpoint", s.Path("nowhere"), "--data-dir", s.Data], "nowhere"),
        ["checkpoint-damaged"] = (s => ["evaluate", s.Sweep("name = recover", "name = recover"), Preserve, "--checkpoint",
            DamagedCheckpoint(s), "--data-dir", s.Data], "state.json"),
        // Command-line flags.
        ["run-bad-threads"] = (s => ["run", s.Sweep("name = recover", "name = recover"), "--threads", "-2", "--data-dir", s.Data], "--threads"),
        ["run-bad-http"] = (s => ["run", s.Sweep("name = recover", "name = recover"), "--http", "nonsense", "--data-dir", s.Data], "nonsense"),
        ["run-missing-file"] = (s => ["run", s.Path("absent.hocon"), "--data-dir", s.Data], "absent.hocon"),
        ["worker-without-seeds"] = (s => ["worker", "--data-dir", s.Data], "--seeds"),
        ["seed-bad-bind"] = (s => ["seed", "--bind", "nothost", "--data-dir", s.Data], "nothost"),
        ["results-unknown-sweep"] = (s => ["results", "nonesuch", "--data-dir", s.Data], "nonesuch"),
        ["export-unknown-sweep"] = (s => ["export", "nonesuch", "t1", "--out", s.Out, "--data-dir", s.Data], "nonesuch"),
        ["bench-zero-steps"] = (s => ["bench", "--steps", "0"], "--steps"),
        ["generate-bad-ids"] = (s => ["generate", "--model", s.Model(), "--prompt-ids", "1,x"], "'x' is not a token id"),
    };

    public static TheoryData<string> Names => new(Cases.Keys);

    /// <summary>The tiny sweep's Preserve trial.</summary>
    private static string Preserve => Scale.Actors.Sweeps.SearchSpace.TrialId("preserve", new Dictionary<string, string>());

    [Theory]
    [MemberData(nameof(Names))]
    public void Malformed_input_exits_2_with_one_line_naming_the_problem_and_leaves_nothing_half_written(string name)
    {
        using var dir = new TempDirectory();
        var scratch = new Scratch(dir);
        var (arguments, message) = Cases[name];
        var args = arguments(scratch);
        var before = Snapshot(dir.Path);

        var result = ScaleProcess.Run(args);

        var stderr = result.Stderr.Trim();
        Assert.True(result.ExitCode == 2, $"{name}: exit {result.ExitCode}\nstderr: {result.Stderr}\nstdout: {result.Stdout}");
        Assert.True(!stderr.Contains('\n'), $"{name}: more than one line on stderr:\n{result.Stderr}");
        Assert.Contains(message, stderr, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("   at ", result.Stderr + result.Stdout);
        Assert.Equal(before, Snapshot(dir.Path));   // nothing written, nothing half-written
    }

    [Theory]
    [InlineData("bench")]
    [InlineData("generate")]
    [InlineData("run")]
    [InlineData("seed")]
    [InlineData("worker")]
    [InlineData("status")]
    [InlineData("results")]
    [InlineData("plot")]
    [InlineData("evaluate")]
    [InlineData("report")]
    [InlineData("export")]
    [InlineData("tokenize")]
    [InlineData("experiment")]
    [InlineData("cancel")]
    public void Every_commands_help_prints(string command)
    {
        var result = ScaleProcess.Run(command, "--help");
        Assert.True(result.ExitCode == 0, result.Stderr + result.Stdout);
        Assert.Contains("USAGE", result.Stdout);
    }

    /// <summary>Every file and directory under <paramref name="root"/> with its size (directories as -1).</summary>
    private static string Snapshot(string root)
        => string.Join("\n", Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(p => $"{Path.GetRelativePath(root, p)} {(File.Exists(p) ? new FileInfo(p).Length : -1)}"));

    private static string[] Run(Scratch s, string file) => ["run", file, "--data-dir", s.Data, "--http", "off", "--plain"];

    private static string[] Exp(Scratch s, string file) => ["experiment", file, "--data-dir", s.Data, "--json"];

    private static string[] Gen(Scratch s, string model) => ["generate", "--model", model, "--prompt-ids", "1,2"];

    private static string[] GenText(Scratch s, string model) => ["generate", "--model", model, "--prompt", "Velmora"];

    private static string[] Tok(Scratch s, string corpus) => ["tokenize", corpus, "--model", s.Model(), "--out", s.Out];

    /// <summary>A text sweep on an imported model and token shards that were written whole and then damaged by <paramref name="damage"/>.</summary>
    private static string[] ShardExperiment(Scratch s, Action<string> damage)
    {
        var model = s.Model();
        var corpus = System.IO.Path.GetDirectoryName(s.File("corpus/a.txt", string.Join("\n", Enumerable.Repeat("Velmora Brint was born in Preasiburg.", 40))))!;
        s.File("corpus/b.txt", "Gratrend works for Braigum Works.");
        var (old, @new) = (s.Path("shards-old"), s.Path("shards-new"));
        CorpusTokenizer.Write(corpus, model, old);
        CorpusTokenizer.Write(corpus, model, @new);
        damage(old);
        var file = s.File("text.hocon", $$"""
            sweep {
              name = shards
              base = "{{model}}"
              experiment {
                old { kind = text, folder = "{{old}}" }
                new { kind = text, folder = "{{@new}}" }
                continual { steps = 2, batch = 2, sequence-length = 8 }
              }
              methods = [frozen]
            }
            """);
        return Run(s, file);
    }

    /// <summary>A checkpoint directory with all three files, whose state.json is damaged.</summary>
    private static string DamagedCheckpoint(Scratch s)
    {
        s.File("ckpt/trainable.safetensors", "x");
        s.File("ckpt/optimizer.safetensors", "x");
        return Path.GetDirectoryName(s.File("ckpt/state.json", "{ damaged"))!;
    }

    private static string Damage(string directory, string file, string text)
    {
        File.WriteAllText(Path.Combine(directory, file), text);
        return directory;
    }

    private static string Edit(string directory, string file, string find, string replace)
    {
        var path = Path.Combine(directory, file);
        var text = File.ReadAllText(path);
        Assert.Contains(find, text);
        File.WriteAllText(path, text.Replace(find, replace));
        return directory;
    }

    private static string Remove(string directory, string file)
    {
        File.Delete(Path.Combine(directory, file));
        return directory;
    }

    private static string Truncate(string directory, string file, int keep)
    {
        var path = Path.Combine(directory, file);
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..keep]);
        return directory;
    }

    private static string Bytes(Scratch s, string name, byte[] bytes)
    {
        var path = s.Path(name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, bytes);
        return Path.GetDirectoryName(path)!;
    }
}
