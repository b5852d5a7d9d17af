using System.Text.Json.Nodes;
using Scale.Model.Data;
using Scale.Tests.Model;

namespace Scale.Tests.Data;

public class TokenizerTests
{
    private static IReadOnlyList<string> Texts()
    {
        var english = new BioWorld(BioLanguage.English, 1);
        var korean = new BioWorld(BioLanguage.Korean, 1);
        return BioRenderer.Corpus(english.DrawPopulation(40), BioLanguage.English, 3, 1)
            .Concat(BioRenderer.Corpus(korean.DrawPopulation(40), BioLanguage.Korean, 3, 1)).ToList();
    }

    private static ByteBpeTokenizer TrainOnBiographies(int vocabSize = 600) => ByteBpeTokenizer.Train(Texts(), vocabSize);

    [Fact]
    public void Mixed_english_and_korean_text_round_trips_including_unseen_characters()
    {
        var tokenizer = TrainOnBiographies();
        const string text = "Velmora Brint was born on March 3, 1952. 김민의 고향은 부산시이다. Unseen: 漢字, emoji 🙂, tabs\tand\nnewlines!";

        var ids = tokenizer.Encode(text);

        Assert.Equal(text, tokenizer.Decode(ids));
        Assert.All(ids, id => Assert.InRange(id, 0, tokenizer.VocabSize - 1));
    }

    [Fact]
    public void Training_learns_the_requested_vocabulary_and_compresses_the_corpus()
    {
        var tokenizer = TrainOnBiographies(vocabSize: 600);
        var texts = Texts();
        var (english, korean) = (texts[0], texts[^1]);

        Assert.Equal(600, tokenizer.VocabSize);
        Assert.Equal(600 - 257, tokenizer.Merges.Count);
        Assert.True(tokenizer.Encode(english).Count * 2 < System.Text.Encoding.UTF8.GetByteCount(english));
        Assert.True(tokenizer.Encode(korean).Count * 2 < System.Text.Encoding.UTF8.GetByteCount(korean));
    }

    [Fact]
    public void Training_is_deterministic()
    {
        Assert.Equal(TrainOnBiographies().Merges, TrainOnBiographies().Merges);
    }

    [Fact]
    public void Save_and_load_round_trip_as_a_hugging_face_tokenizer_json()
    {
        using var dir = new TempDirectory();
        var tokenizer = TrainOnBiographies();
        var path = dir.Combine("tokenizer.json");
        const string text = "김민은 Karsten College를 졸업했다. <|endoftext|>";

        tokenizer.Save(path);
        var loaded = ByteBpeTokenizer.Load(path);

        var json = JsonNode.Parse(File.ReadAllText(path))!;
        Assert.Equal("BPE", json["model"]!["type"]!.GetValue<string>());
        Assert.Equal("ByteLevel", json["pre_tokenizer"]!["type"]!.GetValue<string>());
        Assert.Equal(tokenizer.Encode(text), loaded.Encode(text));
        Assert.Contains(tokenizer.EndOfTextId, loaded.Encode(text));
    }

    [Fact]
    public void A_tokenizer_json_written_in_hf_format_loads_and_encodes_as_its_merges_say()
    {
        using var dir = new TempDirectory();
        // "Ġ" is the byte-level symbol for a space; merges use the newer [left, right] form and the older "left right" form.
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = 0, ["content"] = "<|endoftext|>", ["special"] = true }),
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["vocab"] = new JsonObject
                {
                    ["<|endoftext|>"] = 0, ["h"] = 1, ["e"] = 2, ["l"] = 3, ["o"] = 4, ["Ġ"] = 5, ["w"] = 6, ["r"] = 7, ["d"] = 8,
                    ["he"] = 9, ["ll"] = 10, ["llo"] = 11, ["hello"] = 12, ["Ġw"] = 13, ["or"] = 14,
                },
                ["merges"] = new JsonArray(new JsonArray("h", "e"), new JsonArray("l", "l"), "ll o", "he llo", "Ġ w", "o r"),
            },
        };
        var path = dir.Combine("tokenizer.json");
        File.WriteAllText(path, json.ToJsonString());

        var tokenizer = ByteBpeTokenizer.Load(path);

        Assert.Equal([12, 13, 14, 3, 8], tokenizer.Encode("hello world"));
        Assert.Equal("hello world", tokenizer.Decode([12, 13, 14, 3, 8]));
        Assert.Equal(0, tokenizer.EndOfTextId);
    }

    [Fact]
    public void A_tokenizer_json_that_is_not_byte_level_bpe_is_rejected_with_the_reason()
    {
        using var dir = new TempDirectory();
        var path = dir.Combine("tokenizer.json");
        File.WriteAllText(path, """{"model": {"type": "WordPiece", "vocab": {}}}""");

        var error = Assert.Throws<Scale.Model.Transformer.InvalidCheckpointException>(() => ByteBpeTokenizer.Load(path));

        Assert.Contains("WordPiece", error.Message);
    }

    /// <summary>BPE training the plain way, every pair recounted over the whole corpus at every merge: the reference for the incremental trainer.</summary>
    private static List<(string, string)> ReferenceMerges(IEnumerable<string> words, int merges)
    {
        var sequences = words.GroupBy(w => w).Select(g => (Symbols: g.Key.Select(c => c.ToString()).ToList(), Count: (long)g.Count())).ToList();
        var result = new List<(string, string)>();
        while (result.Count < merges)
        {
            var pairs = new Dictionary<(string, string), long>();
            foreach (var (symbols, count) in sequences)
                for (int i = 0; i + 1 < symbols.Count; i++) pairs[(symbols[i], symbols[i + 1])] = pairs.GetValueOrDefault((symbols[i], symbols[i + 1])) + count;
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(p => p.Value).ThenBy(p => p.Key.Item1, StringComparer.Ordinal).ThenBy(p => p.Key.Item2, StringComparer.Ordinal).First().Key;
            result.Add(best);
            foreach (var (symbols, _) in sequences)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == best.Item1 && symbols[i + 1] == best.Item2)
                    {
                        symbols[i] = best.Item1 + best.Item2;
                        symbols.RemoveAt(i + 1);
                    }
        }
        return result;
    }

    [Fact]
    public void The_incremental_trainer_learns_exactly_the_merges_of_plain_bpe_training()
    {
        var texts = Texts().Append("aaaa aaaaaaa abab ababab bbb").ToList();
        var tokenizer = ByteBpeTokenizer.Train(texts, 257 + 300);
        // The same pre-tokens, in byte-level symbols, as the tokenizer sees them: read back through its own encoding.
        var words = texts.SelectMany(t => System.Text.RegularExpressions.Regex.Matches(t, @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
                                          .Select(m => string.Concat(tokenizer.Encode(m.Value).Select(id => tokenizer.Vocabulary.First(v => v.Value == id).Key))))
            .ToList();

        var expected = ReferenceMerges(words.Select(w => string.Concat(w.Select(c => c))), 300);

        Assert.Equal(expected, tokenizer.Merges);
    }
}
