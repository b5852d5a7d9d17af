using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using Scale.Model.Checkpoints;
using Scale.Model.Transformer;

namespace Scale.Model.Data;

/// <summary>
/// A byte-level BPE tokenizer (GPT-2 style: any UTF-8 text, Latin and Hangul alike, with no unknown token),
/// stored as a Hugging Face tokenizer.json. Encoding and decoding are Microsoft.ML.Tokenizers' BpeTokenizer;
/// what that library lacks — training merges on a corpus and reading and writing tokenizer.json — is here.
/// </summary>
internal sealed partial class ByteBpeTokenizer : ITokenizer
{
    public const string EndOfText = "<|endoftext|>";

    // GPT-2's pre-tokenization: contractions, letter runs, digit runs, other runs, each with one leading space.
    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")]
    private static partial Regex PreTokenizationPattern();

    private readonly BpeTokenizer tokenizer;

    private ByteBpeTokenizer(IReadOnlyDictionary<string, int> vocabulary, IReadOnlyList<(string Left, string Right)> merges,
                             IReadOnlyDictionary<string, int> specialTokens)
    {
        Vocabulary = vocabulary;
        Merges = merges;
        SpecialTokens = specialTokens;
        tokenizer = BpeTokenizer.Create(new BpeOptions(vocabulary.Concat(specialTokens))
        {
            Merges = merges.Select(m => $"{m.Left} {m.Right}").ToList(),
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(PreTokenizationPattern(), specialTokens.ToDictionary()),
            SpecialTokens = specialTokens,
        });
    }

    /// <summary>Token → id, without the special tokens.</summary>
    public IReadOnlyDictionary<string, int> Vocabulary { get; }
    public IReadOnlyList<(string Left, string Right)> Merges { get; }
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <summary>Ids run from 0 to VocabSize − 1.</summary>
    public int VocabSize => Vocabulary.Count + SpecialTokens.Count;

    public int EndOfTextId => SpecialTokens[EndOfText];

    public IReadOnlyList<int> Encode(string text) => tokenizer.EncodeToIds(text);

    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids);

    /// <summary>
    /// Learns <paramref name="vocabSize"/> − 257 merges on <paramref name="texts"/>: the 256 bytes and the
    /// end-of-text token come first, then the most frequent adjacent pair is merged, again and again (ties
    /// broken by the pair's text, so training is deterministic).
    /// </summary>
    public static ByteBpeTokenizer Train(IEnumerable<string> texts, int vocabSize)
    {
        const int reserved = 256 + 1;
        if (vocabSize < reserved) throw new ArgumentException($"The vocabulary must hold at least {reserved} tokens (256 bytes and {EndOfText}), got {vocabSize}.");
        var words = new Dictionary<string, long>();
        foreach (var text in texts)
            foreach (Match match in PreTokenizationPattern().Matches(text))
            {
                var word = ToByteLevel(match.Value);
                words[word] = words.GetValueOrDefault(word) + 1;
            }
        var vocabulary = new Dictionary<string, int>();
        foreach (var symbol in ByteToSymbol) vocabulary[symbol.ToString()] = vocabulary.Count + 1;   // id 0 is end-of-text
        var merges = new List<(string, string)>();
        var trainer = new MergeCounts(words);
        while (vocabulary.Count + 1 < vocabSize && trainer.Best() is var (left, right))
        {
            var merged = left + right;
            merges.Add((left, right));
            vocabulary.TryAdd(merged, vocabulary.Count + 1);
            trainer.Merge(left, right);
        }
        return new ByteBpeTokenizer(vocabulary, merges, new Dictionary<string, int> { [EndOfText] = 0 });
    }

    /// <summary>
    /// The pair counts of BPE training, kept up to date as merges are applied: each merge recounts only the words
    /// that hold its pair (not the whole corpus), and the most frequent pair comes from an ordered set, so training
    /// costs about the corpus once plus the words each merge touches. The pair chosen is the most frequent, ties
    /// broken by the pair's text (ordinal), so training is deterministic.
    /// </summary>
    private sealed class MergeCounts
    {
        private readonly List<string> text = [];                        // symbol id → its text
        private readonly Dictionary<string, int> ids = new(StringComparer.Ordinal);
        private readonly List<int>[] words;                             // each distinct pre-token as symbol ids
        private readonly long[] counts;                                 // how often each occurs in the corpus
        private readonly Dictionary<(int, int), long> pairs = [];
        private readonly Dictionary<(int, int), HashSet<int>> holders = [];   // the words a pair occurs in (maybe no longer)
        private readonly SortedSet<(long Count, int Left, int Right)> ranked;

        public MergeCounts(Dictionary<string, long> corpus)
        {
            ranked = new SortedSet<(long Count, int Left, int Right)>(Comparer<(long Count, int Left, int Right)>.Create((a, b) =>
            {
                int byCount = b.Count.CompareTo(a.Count);
                if (byCount != 0) return byCount;
                int byLeft = string.CompareOrdinal(text[a.Left], text[b.Left]);
                return byLeft != 0 ? byLeft : string.CompareOrdinal(text[a.Right], text[b.Right]);
            }));
            words = new List<int>[corpus.Count];
            counts = new long[corpus.Count];
            int w = 0;
            foreach (var (word, count) in corpus)
            {
                words[w] = word.Select(c => Intern(c.ToString())).ToList();
                counts[w] = count;
                Count(w, +1, null);
                w++;
            }
            foreach (var (pair, count) in pairs) ranked.Add((count, pair.Item1, pair.Item2));
        }

        public (string Left, string Right)? Best() => ranked.Count == 0 ? null : (text[ranked.Min.Left], text[ranked.Min.Right]);

        /// <summary>Merges every occurrence of the pair, left to right in each word, and updates the counts it changes.</summary>
        public void Merge(string leftText, string rightText)
        {
            var (left, right) = (ids[leftText], ids[rightText]);
            int merged = Intern(leftText + rightText);
            var changed = new Dictionary<(int, int), long>();
            foreach (int w in holders[(left, right)].ToList())
            {
                var symbols = words[w];
                bool holds = false;
                for (int i = 0; i + 1 < symbols.Count && !holds; i++) holds = symbols[i] == left && symbols[i + 1] == right;
                if (!holds) continue;
                Count(w, -1, changed);
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == left && symbols[i + 1] == right)
                    {
                        symbols[i] = merged;
                        symbols.RemoveAt(i + 1);
                    }
                Count(w, +1, changed);
            }
            foreach (var (pair, delta) in changed)
            {
                if (delta == 0) continue;
                long before = pairs.GetValueOrDefault(pair);
                if (before > 0) ranked.Remove((before, pair.Item1, pair.Item2));
                long after = before + delta;
                if (after > 0)
                {
                    pairs[pair] = after;
                    ranked.Add((after, pair.Item1, pair.Item2));
                }
                else pairs.Remove(pair);
            }
        }

        private int Intern(string symbol)
        {
            if (ids.TryGetValue(symbol, out int id)) return id;
            ids[symbol] = text.Count;
            text.Add(symbol);
            return text.Count - 1;
        }

        /// <summary>Adds (sign +1) or removes (−1) word w's pairs: into <paramref name="changed"/>, or straight into the counts.</summary>
        private void Count(int w, int sign, Dictionary<(int, int), long>? changed)
        {
            var symbols = words[w];
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                var pair = (symbols[i], symbols[i + 1]);
                if (changed is null) pairs[pair] = pairs.GetValueOrDefault(pair) + counts[w];
                else changed[pair] = changed.GetValueOrDefault(pair) + sign * counts[w];
                if (sign > 0)
                {
                    if (!holders.TryGetValue(pair, out var set)) holders[pair] = set = [];
                    set.Add(w);
                }
            }
        }
    }

    /// <summary>Writes a Hugging Face tokenizer.json (BPE model, ByteLevel pre-tokenizer and decoder).</summary>
    public void Save(string path)
    {
        var vocab = new JsonObject();
        foreach (var (token, id) in SpecialTokens.Concat(Vocabulary).OrderBy(t => t.Value)) vocab[token] = id;
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(SpecialTokens.Select(t => (JsonNode)new JsonObject
            {
                ["id"] = t.Value, ["content"] = t.Key, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            }).ToArray()),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["post_processor"] = null,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(Merges.Select(m => (JsonNode)$"{m.Left} {m.Right}").ToArray()),
            },
        };
        var temp = path + ".partial";
        File.WriteAllText(temp, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Reads a Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Llama 3, Qwen2 style).</summary>
    public static ByteBpeTokenizer Load(string path)
    {
        if (!File.Exists(path)) throw new InvalidCheckpointException($"{path}: tokenizer file not found.");
        var json = HfCheckpoint.ReadJsonObject(path);
        var model = json["model"] as JsonObject ?? throw new InvalidCheckpointException($"{path}: has no model section.");
        var type = model["type"]?.GetValue<string>();
        if (type != "BPE") throw new InvalidCheckpointException($"{path}: tokenizer model '{type}' is not supported; Scale reads byte-level BPE.");
        if (!UsesByteLevel(json["pre_tokenizer"]))
            throw new InvalidCheckpointException($"{path}: only byte-level BPE is supported (the pre_tokenizer has no ByteLevel step).");
        var specials = new Dictionary<string, int>();
        foreach (var added in json["added_tokens"] as JsonArray ?? [])
            specials[added!["content"]!.GetValue<string>()] = added["id"]!.GetValue<int>();
        var vocabulary = (model["vocab"] as JsonObject ?? throw new InvalidCheckpointException($"{path}: the BPE model has no vocab."))
            .Where(v => !specials.ContainsKey(v.Key)).ToDictionary(v => v.Key, v => v.Value!.GetValue<int>());
        var merges = (model["merges"] as JsonArray ?? []).Select(m => m switch
        {
            JsonArray pair => (pair[0]!.GetValue<string>(), pair[1]!.GetValue<string>()),
            _ => m!.GetValue<string>().Split(' ') is [var left, var right]
                ? (left, right)
                : throw new InvalidCheckpointException($"{path}: malformed merge '{m}'."),
        }).ToList();
        if (!specials.ContainsKey(EndOfText) && vocabulary.Remove(EndOfText, out var id)) specials[EndOfText] = id;
        return new ByteBpeTokenizer(vocabulary, merges, specials);
    }

    private static bool UsesByteLevel(JsonNode? node) => node switch
    {
        JsonObject o when o["type"]?.GetValue<string>() == "ByteLevel" => true,
        JsonObject o when o["pretokenizers"] is JsonArray steps => steps.Any(UsesByteLevel),
        _ => false,
    };

    /// <summary>GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes stand for themselves,
    /// the others are shifted past 255.</summary>
    private static readonly char[] ByteToSymbol = BuildByteToSymbol();

    private static char[] BuildByteToSymbol()
    {
        var map = new char[256];
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)(256 + shifted++);
        }
        return map;
    }

    private static string ToByteLevel(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToSymbol[bytes[i]];
        return new string(chars);
    }
}
