using System.Diagnostics;
using System.Text.Json;
using Scale.Model.Data;
using Scale.Model.Transformer;
using Scale.Tests.Model;

namespace Scale.Tests.Data;

/// <summary>
/// tokenizer.json files of each family's kind, made and encoded by Hugging Face's own tokenizers library (its Node
/// binding, tests/node), trained on a mixed English/Korean/code/emoji corpus: the reference Scale's ids must equal.
/// </summary>
public sealed class HfTokenizerReference : IDisposable
{
    public const string Text = "Mixed: Korean 한국어 텍스트, code fn main() { println!(\"{}\", 42); } and emoji 🚀👍 — done 12345.\n";

    public static readonly string[] Families = ["llama3", "qwen2", "mistral", "llama2", "digits"];

    private TempDirectory Directory { get; } = new();
    public IReadOnlyDictionary<string, (int[] Plain, int[] Special, string Decoded)> Expected { get; }

    public HfTokenizerReference()
    {
        DebianPackages.Ensure(() => File.Exists("/usr/bin/node") && File.Exists("/usr/bin/npm"), "nodejs", "npm");
        string node = Repository.File("tests", "node");
        if (!System.IO.Directory.Exists(Path.Combine(node, "node_modules", "tokenizers")))
            Run("npm", "install --no-audit --no-fund", node, "installing tests/node's reference (npm, from the package registry)");
        var corpus = Directory.Combine("corpus.txt");
        var lines = new[]
        {
            "Hello world, the year 2026 has 365 days.", "안녕하세요, 세계! 한국어 문장입니다.", "def square(x):", "    return x ** 2  # 😀 emoji 🎉",
            "Rust와 Python 코드를 함께 씁니다: let y = f(3);", "The quick brown fox jumps over the lazy dog 7 times.",
        };
        File.WriteAllLines(corpus, Enumerable.Repeat(lines, 40).SelectMany(l => l));
        var text = Directory.Combine("text.txt");
        File.WriteAllText(text, Text);
        Run("node", $"hf-tokenizers.js \"{corpus}\" \"{text}\" \"{Directory.Path}\"", node, "making the reference tokenizers");
        using var json = JsonDocument.Parse(File.ReadAllText(Directory.Combine("expected.json")));
        Expected = json.RootElement.EnumerateObject().ToDictionary(f => f.Name, f => (
            f.Value.GetProperty("plain").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            f.Value.GetProperty("special").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            f.Value.GetProperty("decoded").GetString()!));
    }

    private static void Run(string program, string arguments, string directory, string what)
    {
        var start = new ProcessStartInfo(program, arguments) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"{what} needs {program} (Node.js; .ci/run installs Debian's nodejs and npm): {e.Message}");
        }
        var stderr = process.StandardError.ReadToEndAsync();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{what}: {program} {arguments} exited {process.ExitCode}: {stderr.Result}");
    }


    public string Family(string name) => Directory.Combine(name);

    public string Combine(string name) => Directory.Combine(name);

    public void Dispose() => Directory.Dispose();
}

public class HfTokenizerTests(HfTokenizerReference reference) : IClassFixture<HfTokenizerReference>
{
    public static TheoryData<string> Families => new(HfTokenizerReference.Families);

    [Theory]
    [MemberData(nameof(Families))]
    public void Scale_encodes_as_hugging_face_does(string family)
    {
        using var tokenizer = HfTokenizer.Load(reference.Family(family), modelVocabSize: 4096);
        var (plain, special, decoded) = reference.Expected[family];

        Assert.Equal(plain, tokenizer.Encode(HfTokenizerReference.Text));
        Assert.Equal(special, tokenizer.EncodeDocument(HfTokenizerReference.Text));   // the post-processor's BOS, where the family has one
        Assert.Equal(decoded, tokenizer.Decode(plain));
        if (family != "digits") Assert.Equal(HfTokenizerReference.Text, decoded);   // the reference itself round-trips (digits decodes with spaces)
        Assert.Equal(family is "llama3" or "mistral" or "llama2", tokenizer.DocumentPrefix.Count == 1);
    }

    [Theory]
    [InlineData("llama3", "<|end_of_text|>")]   // tokenizer_config.json's eos_token, a string
    [InlineData("llama2", "</s>")]              // … or an object with its content
    [InlineData("qwen2", "<|endoftext|>")]
    public void The_end_of_sequence_token_comes_from_the_models_files(string family, string eos)
    {
        using var tokenizer = HfTokenizer.Load(reference.Family(family), 4096);
        using var file = JsonDocument.Parse(File.ReadAllText(Path.Combine(reference.Family(family), "tokenizer.json")));
        int id = file.RootElement.GetProperty("added_tokens").EnumerateArray().Single(t => t.GetProperty("content").GetString() == eos).GetProperty("id").GetInt32();

        Assert.Equal(id, tokenizer.EndOfTextId);
        Assert.DoesNotContain(id, tokenizer.DocumentPrefix);
    }

    [Fact]
    public void A_tokenizer_with_ids_beyond_the_models_vocabulary_is_refused_by_name()
    {
        var error = Assert.Throws<InvalidCheckpointException>(() => HfTokenizer.Load(reference.Family("qwen2"), modelVocabSize: 50));

        Assert.Contains("model's vocabulary has 50 rows", error.Message);
        Assert.Contains("tokenizer.json", error.Message);
    }

    [Fact]
    public void Scales_own_tokenizer_file_encodes_the_same_through_hugging_faces_library()
    {
        using var dir = new TempDirectory();
        var texts = File.ReadAllLines(reference.Combine("corpus.txt"));
        var own = ByteBpeTokenizer.Train(texts, 400);
        own.Save(dir.Combine("tokenizer.json"));

        using var read = HfTokenizer.Load(dir.Path, own.VocabSize);

        Assert.Equal(own.Encode(HfTokenizerReference.Text), read.Encode(HfTokenizerReference.Text));
        Assert.Equal(own.EndOfTextId, read.EndOfTextId);
        Assert.Empty(read.DocumentPrefix);
    }
}
