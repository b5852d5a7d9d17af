using System.Diagnostics;
using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Scale.Model.Transformer;
using Scale.Tests.Data;
using Scale.Tests.Model;

namespace Scale.Tests.Host;

/// <summary>The guide's "Your own model and corpus" (docs/guide.md, linked from the README): its commands run exactly as written, as a bash script.</summary>
public class ReadmeRecipeTests
{

    /// <summary>The first ```bash block of the guide's section with this heading.</summary>
    private static string Recipe(string heading)
    {
        var readme = File.ReadAllText(Repository.File("docs", "guide.md"));
        int section = readme.IndexOf($"## {heading}\n", StringComparison.Ordinal);
        Assert.True(section >= 0, $"docs/guide.md has no section '{heading}'");
        int start = readme.IndexOf("```bash\n", section, StringComparison.Ordinal) + "```bash\n".Length;
        return readme[start..readme.IndexOf("\n```", start, StringComparison.Ordinal)];
    }

    [Fact]
    public void Your_own_model_and_corpus_runs_as_written()
    {
        using var dir = new TempDirectory();
        var english = BioRenderer.Corpus(new BioWorld(BioLanguage.English, 6).DrawPopulation(12), BioLanguage.English, 3, 1);
        var korean = BioRenderer.Corpus(new BioWorld(BioLanguage.Korean, 6).DrawPopulation(12), BioLanguage.Korean, 3, 1);
        // A tiny checkpoint in Llama 3.2's layout (tied embeddings, grouped-query attention, llama3 rope scaling), its tokenizer
        // covering both scripts, and an end-of-sequence token named in tokenizer_config.json.
        var model = dir.Combine("models", "my-llama");
        var tokenizer = ByteBpeTokenizer.Train(english.Concat(korean), 400);
        var config = new ModelConfig
        {
            VocabSize = tokenizer.VocabSize, HiddenSize = 32, NumLayers = 2, NumHeads = 4, NumKvHeadsOrNull = 2, IntermediateSize = 64,
            TieWordEmbeddings = true, RopeTheta = 500000, RopeScaling = new RopeScaling { Factor = 32, OriginalMaxPositionEmbeddings = 64 },
        };
        using (var decoder = Decoder.Create(config, seed: 5)) HfCheckpoint.Save(decoder, model);
        tokenizer.Save(Path.Combine(model, "tokenizer.json"));
        File.WriteAllText(Path.Combine(model, "tokenizer_config.json"), """{ "eos_token": "<|endoftext|>" }""");
        TokenShardTests.CorpusFolder(dir, english, Path.Combine("corpora", "english"));
        TokenShardTests.CorpusFolder(dir, korean, Path.Combine("corpora", "korean"));
        // `scale` on the PATH: the build beside the tests.
        var bin = Directory.CreateDirectory(dir.Combine("bin")).FullName;
        File.WriteAllText(Path.Combine(bin, "scale"), $"#!/bin/sh\nexec dotnet \"{Path.Combine(AppContext.BaseDirectory, "scale.dll")}\" \"$@\"\n");
        File.SetUnixFileMode(Path.Combine(bin, "scale"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.WriteAllText(dir.Combine("recipe.sh"), "set -euo pipefail\n" + Recipe("Your own model and corpus") + "\n");

        var start = new ProcessStartInfo("bash", [dir.Combine("recipe.sh")])
        {
            WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        start.Environment["PATH"] = bin + ":" + Environment.GetEnvironmentVariable("PATH");
        start.Environment["NO_COLOR"] = "1";
        start.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(15)), "the recipe did not finish in 15 minutes");

        Assert.True(process.ExitCode == 0, $"the recipe exited {process.ExitCode}:\n{stdout}\n{stderr.Result}");
        Assert.Contains("perplexity", stdout);
        Assert.Contains("route novelty-auto:0.995:128 (adapt)", stdout);  // the routing axis's rows, by label
        Assert.Contains("route cosine:0.5 (full)", stdout);              // a routed control
        Assert.Contains("5 trials: 5 completed, 0 running, 0 pending, 0 failed", stdout);
        Assert.DoesNotContain("[INFO]", stdout);   // no line of Akka's own after the command's (its shutdown is quiet)
        Assert.True(File.Exists(dir.Combine("my-shift.png")));
        Assert.True(File.Exists(dir.Combine("my-shift-report", "report.md")));
        Assert.True(File.Exists(dir.Combine("shards", "korean", "index.json")));
    }
}
