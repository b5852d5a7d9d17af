using System.Text.Json;
using Scale.Model.Checkpoints;
using Scale.Model.Transformer;
using Scale.Tests.Model;

namespace Scale.Tests.Host;

public class CommandLineTests
{
    [Theory]
    [InlineData("Host=db;Database=s;Username=u;Password=hunter2-secret", "Host=db;Database=s;Username=u;Password=***")]
    [InlineData("host=db; PASSWORD = 'hunter2 secret'; port=5432", "host=db; PASSWORD = ***; port=5432")]
    [InlineData("postgres://scale:hunter2-secret@db:5432/sweeps", "postgres://scale:***@db:5432/sweeps")]
    [InlineData("GET /?token=hunter2-secret&sweep=a", "GET /?token=***&sweep=a")]
    [InlineData("Host=db;Database=s;Username=u", "Host=db;Database=s;Username=u")]   // nothing secret: unchanged
    [InlineData("https://example.org/path@v2", "https://example.org/path@v2")]
    public void Secrets_are_redacted_from_what_a_user_reads(string text, string redacted)
        => Assert.Equal(redacted, Scale.Host.Commands.Redaction.Redact(text));

    [Fact]
    public void A_secret_on_the_command_line_is_warned_about_and_never_printed()
    {
        using var dir = new TempDirectory();

        var seed = ScaleProcess.Run("seed", "--journal", "postgres://scale:hunter2-secret@127.0.0.1/sweeps", "--bind", "127.0.0.1:0",
                                    "--http", "off", "--data-dir", dir.Combine("d"));

        Assert.Equal(2, seed.ExitCode);
        Assert.Contains("warning: --journal on the command line is visible to every user", seed.Stderr);
        Assert.Contains("postgres://scale:***@127.0.0.1/sweeps", seed.Stderr);
        Assert.DoesNotContain("hunter2-secret", seed.Stderr + seed.Stdout);
    }

    [Fact]
    public void Generate_prints_the_greedy_continuation_of_a_saved_model_as_ids()
    {
        using var dir = new TempDirectory();
        using var model = Decoder.Create(Tiny.Gqa, seed: 4);
        HfCheckpoint.Save(model, dir.Path);
        var expected = Generation.Greedy(model, [1, 2, 3], maxNewTokens: 6);

        var result = ScaleProcess.Run("generate", "--model", dir.Path, "--prompt-ids", "1,2,3", "--max-new-tokens", "6", "--ids");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(string.Join(",", expected), result.Stdout.Trim());
    }

    [Fact]
    public void Generate_encodes_a_text_prompt_with_the_model_directorys_tokenizer()
    {
        using var dir = new TempDirectory();
        var tokenizer = Scale.Model.Data.ByteBpeTokenizer.Train(["Velmora Brint was born in Preasiburg.", "Gratrend works for Braigum Works."], 300);
        tokenizer.Save(dir.Combine("tokenizer.json"));
        using var model = Decoder.Create(Tiny.Mha with { VocabSize = tokenizer.VocabSize }, seed: 4);
        HfCheckpoint.Save(model, dir.Path);
        var prompt = tokenizer.Encode("Velmora Brint was born in").Select(id => (long)id).ToArray();
        var expected = Generation.Greedy(model, prompt, maxNewTokens: 5, stopToken: tokenizer.EndOfTextId);

        var ids = ScaleProcess.Run("generate", "--model", dir.Path, "--prompt", "Velmora Brint was born in", "--max-new-tokens", "5", "--ids");
        var text = ScaleProcess.Run("generate", "--model", dir.Path, "--prompt", "Velmora Brint was born in", "--max-new-tokens", "5");

        Assert.Equal(0, ids.ExitCode);
        Assert.Equal(string.Join(",", expected), ids.Stdout.Trim());
        Assert.Equal(tokenizer.Decode(expected.Where(id => id != tokenizer.EndOfTextId).Select(id => (int)id)), text.Stdout.TrimEnd('\n'));
    }

    [Theory]
    [InlineData("no-model", "no such model directory")]
    [InlineData("bad-ids", "'x' is not a token id")]
    [InlineData("text", "tokenizer.json")]
    [InlineData("out-of-vocab", "outside the vocabulary")]
    public void Generate_explains_bad_input_and_exits_non_zero(string fault, string message)
    {
        using var dir = new TempDirectory();
        using var model = Decoder.Create(Tiny.Mha);
        HfCheckpoint.Save(model, dir.Path);
        string[] arguments = fault switch
        {
            "no-model" => ["generate", "--model", dir.Combine("absent"), "--prompt-ids", "1"],
            "bad-ids" => ["generate", "--model", dir.Path, "--prompt-ids", "1,x"],
            "text" => ["generate", "--model", dir.Path, "--prompt", "hello"],
            _ => ["generate", "--model", dir.Path, "--prompt-ids", "1,9999"],
        };

        var result = ScaleProcess.Run(arguments);

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains(message, result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr);   // a message, not a stack trace
    }

    [Fact]
    public void Bench_json_reports_each_method_with_the_documented_fields()
    {
        var result = ScaleProcess.Run("bench", "--json", "--steps", "1", "--warmup", "0", "--methods", "preserve,lora", "--threads", "1");

        Assert.True(result.ExitCode == 0, result.Stderr);
        using var json = JsonDocument.Parse(result.Stdout);
        var methods = json.RootElement.EnumerateArray().ToList();
        Assert.Equal(["preserve", "lora"], methods.Select(m => m.GetProperty("method").GetString()));
        foreach (var m in methods)
        {
            Assert.True(m.GetProperty("tokens_per_second").GetDouble() > 0);
            Assert.True(m.GetProperty("step_ms").GetDouble() > 0);
            Assert.True(m.GetProperty("peak_rss_mb").GetDouble() > 0);
            Assert.True(m.GetProperty("params").GetInt64() > m.GetProperty("trainable_params").GetInt64());
        }
        Assert.Equal(1_054_272, methods[0].GetProperty("trainable_params").GetInt64());   // the PyTorch peer's count
    }

    [Fact]
    public void Bench_rejects_an_unknown_method()
    {
        var result = ScaleProcess.Run("bench", "--methods", "preserve,magic");

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("Unknown bench method 'magic'", result.Stdout + result.Stderr);
    }

    [Fact]
    public void Experiment_names_the_built_ins_when_asked_for_an_unknown_one()
    {
        var result = ScaleProcess.Run("experiment", "nonesuch");

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("No experiment 'nonesuch'", result.Stderr);
        Assert.Contains("bio, bio-ko, bio-qa, bio-validation, text", result.Stderr);
    }

    [Theory]
    [InlineData("run", "quickstart", "--devices", "cuda")]
    [InlineData("experiment", "bio", "--devices", "cpu,cuda:1")]
    [InlineData("worker", "--devices", "cuda:0", "--seeds", "127.0.0.1:1")]
    [InlineData("experiment", "bio", "--precision", "fp8")]
    public void A_cpu_build_asked_for_cuda_or_an_unknown_precision_says_so_in_one_line_and_exits_2(params string[] arguments)
    {
        using var dir = new TempDirectory();
        var result = ScaleProcess.Run([.. arguments, "--data-dir", dir.Path]);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains(arguments.Contains("--precision") ? "Invalid precision" : "CUDA is not available", result.Stderr);
        Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));   // refused before anything was written
    }
}
