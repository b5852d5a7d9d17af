using System.Text.Json.Nodes;
using Scale.Model.Checkpoints;
using Scale.Model.Transformer;

namespace Scale.Model.Data;

/// <summary>What the experiments need of a tokenizer: text to ids and back, and the id that ends a document.</summary>
internal interface ITokenizer
{
    /// <summary>Ids run from 0 to VocabSize − 1.</summary>
    int VocabSize { get; }

    /// <summary>The token that ends a document (end-of-text or end-of-sequence) and separates packed documents.</summary>
    int EndOfTextId { get; }

    /// <summary>The text's ids, with no special token added.</summary>
    IReadOnlyList<int> Encode(string text);

    /// <summary>A training document's ids: with the tokens the tokenizer puts around a sequence (a Llama's BOS), if any.</summary>
    IReadOnlyList<int> EncodeDocument(string text) => Encode(text);

    string Decode(IEnumerable<int> ids);
}

/// <summary>
/// Any Hugging Face tokenizer.json, encoded exactly as Hugging Face encodes it: through Hugging Face's own tokenizers
/// library (its Rust core, by the Tokenizers.DotNet binding), so the file's normalizer, pre-tokenizers (Split, Digits,
/// Metaspace, ByteLevel…), model and decoder all apply as declared. The special tokens the post-processor puts around
/// a sequence (Llama 3's &lt;|begin_of_text|&gt;, Llama 2's &lt;s&gt;) are read from the file and added to training
/// documents, never to prompts or answers; the end-of-sequence token comes from the model's own files.
/// </summary>
internal sealed class HfTokenizer : ITokenizer, IDisposable
{
    public const string FileName = "tokenizer.json";

    private readonly Tokenizers.DotNet.Tokenizer tokenizer;

    private HfTokenizer(Tokenizers.DotNet.Tokenizer tokenizer, int vocabSize, int endOfText, IReadOnlyList<int> prefix, IReadOnlyList<int> suffix)
    {
        this.tokenizer = tokenizer;
        VocabSize = vocabSize;
        EndOfTextId = endOfText;
        DocumentPrefix = prefix;
        DocumentSuffix = suffix;
    }

    public int VocabSize { get; }
    public int EndOfTextId { get; }
    /// <summary>The special tokens before and after a single sequence, from the file's post-processor.</summary>
    public IReadOnlyList<int> DocumentPrefix { get; }
    public IReadOnlyList<int> DocumentSuffix { get; }

    public IReadOnlyList<int> Encode(string text) => Array.ConvertAll(tokenizer.Encode(text), id => (int)id);

    public IReadOnlyList<int> EncodeDocument(string text) => [.. DocumentPrefix, .. Encode(text), .. DocumentSuffix];

    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids.Select(id => (uint)id).ToArray());

    public void Dispose() => tokenizer.Dispose();

    /// <summary>
    /// Loads <paramref name="directory"/>/tokenizer.json for a model of <paramref name="modelVocabSize"/> tokens. Refused,
    /// naming the file and the reason: a missing or malformed file, ids the model's embedding has no row for, or no
    /// end-of-sequence token in tokenizer_config.json, config.json, generation_config.json or the file itself.
    /// </summary>
    public static HfTokenizer Load(string directory, int modelVocabSize)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) throw new InvalidCheckpointException($"{path}: tokenizer file not found; a model directory holds its tokenizer.json.");
        var json = HfCheckpoint.ReadJsonObject(path);
        var model = json["model"] as JsonObject ?? throw new InvalidCheckpointException($"{path}: has no model section.");
        var ids = new Dictionary<string, int>();
        if (model["vocab"] is JsonObject vocab)
            foreach (var (token, id) in vocab) ids[token] = Id(id, path, "model.vocab");
        else if (model["vocab"] is JsonArray pieces)   // Unigram: [piece, score] pairs, ids by position
            for (int i = 0; i < pieces.Count; i++) ids[(pieces[i] as JsonArray)?[0]?.GetValue<string>() ?? $"#{i}"] = i;
        var special = new Dictionary<string, int>();
        foreach (var added in json["added_tokens"] as JsonArray ?? [])
        {
            var content = added?["content"]?.GetValue<string>() ?? throw new InvalidCheckpointException($"{path}: an added token has no content.");
            ids[content] = special[content] = Id(added["id"], path, "added_tokens");
        }
        if (ids.Count == 0) throw new InvalidCheckpointException($"{path}: the tokenizer has no vocabulary.");
        int size = ids.Values.Max() + 1;
        if (size > modelVocabSize)
        {
            var (token, highest) = ids.MaxBy(t => t.Value);
            throw new InvalidCheckpointException(
                $"{path}: token '{token}' has id {highest}, but the model's vocabulary has {modelVocabSize} rows (config.json vocab_size): the tokenizer is not this model's.");
        }
        var (prefix, suffix) = Template(json["post_processor"], path);
        int endOfText = EndOfSequence(directory, ids, special, path);

        // The binding always applies the post-processor; Scale adds those tokens itself, only to training documents,
        // so it reads a copy of the file without it (ids of everything else are the file's own).
        var withoutPost = (JsonObject)json.DeepClone();
        withoutPost["post_processor"] = null;
        var copy = Path.Combine(Path.GetTempPath(), $"scale-tokenizer-{Guid.NewGuid():N}.json");
        try
        {
            File.WriteAllText(copy, withoutPost.ToJsonString());
            Tokenizers.DotNet.Tokenizer loaded;
            try
            {
                loaded = new Tokenizers.DotNet.Tokenizer(copy);
            }
            catch (Exception e) when (e is Tokenizers.DotNet.TokenizerException or InvalidOperationException or ArgumentException)
            {
                throw new InvalidCheckpointException($"{path}: Hugging Face's tokenizers library cannot read it ({e.Message}).");
            }
            return new HfTokenizer(loaded, Math.Max(size, modelVocabSize), endOfText, prefix, suffix);
        }
        finally
        {
            File.Delete(copy);
        }
    }

    private static int Id(JsonNode? node, string path, string where)
    {
        try
        {
            return node?.GetValue<int>() ?? throw new InvalidCheckpointException($"{path}: a token in {where} has no id.");
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new InvalidCheckpointException($"{path}: a token id in {where} is not a whole number.");
        }
    }

    /// <summary>The special-token ids a TemplateProcessing post-processor (alone or in a Sequence) puts before and after $A.</summary>
    private static (IReadOnlyList<int> Prefix, IReadOnlyList<int> Suffix) Template(JsonNode? processor, string path)
    {
        if (processor is not JsonObject p) return ([], []);
        switch (p["type"]?.GetValue<string>())
        {
            case "Sequence":
                foreach (var step in p["processors"] as JsonArray ?? [])
                    if (Template(step, path) is { } found && (found.Prefix.Count > 0 || found.Suffix.Count > 0)) return found;
                return ([], []);
            case "TemplateProcessing":
                var (prefix, suffix) = (new List<int>(), new List<int>());
                bool seen = false;
                var specialTokens = p["special_tokens"] as JsonObject;
                foreach (var piece in p["single"] as JsonArray ?? [])
                {
                    if (piece?["Sequence"] is not null)
                    {
                        seen = true;
                        continue;
                    }
                    var name = piece?["SpecialToken"]?["id"]?.GetValue<string>()
                        ?? throw new InvalidCheckpointException($"{path}: post_processor.single has a piece that is neither a sequence nor a special token.");
                    var tokenIds = specialTokens?[name]?["ids"] as JsonArray
                        ?? throw new InvalidCheckpointException($"{path}: post_processor names the special token '{name}' but does not list its ids.");
                    (seen ? suffix : prefix).AddRange(tokenIds.Select(i => Id(i, path, "post_processor.special_tokens")));
                }
                return (prefix, suffix);
            case "BertProcessing" or "RobertaProcessing":
                int Pair(string key) => Id((p[key] as JsonArray)?[1], path, $"post_processor.{key}");
                return ([Pair("cls")], [Pair("sep")]);
            default:
                return ([], []);   // ByteLevel and others add no tokens
        }
    }

    /// <summary>
    /// The end-of-sequence token: tokenizer_config.json's eos_token, else config.json's or generation_config.json's
    /// eos_token_id (the first, when a list), else a special token named like one (&lt;|endoftext|&gt;, &lt;/s&gt;, &lt;|end_of_text|&gt;).
    /// </summary>
    private static int EndOfSequence(string directory, Dictionary<string, int> ids, Dictionary<string, int> special, string path)
    {
        var configPath = Path.Combine(directory, "tokenizer_config.json");
        if (File.Exists(configPath))
        {
            var eos = HfCheckpoint.ReadJsonObject(configPath)["eos_token"];
            var content = eos switch
            {
                JsonValue v => v.GetValue<string>(),
                JsonObject o => o["content"]?.GetValue<string>(),
                _ => null,
            };
            if (content is not null)
                return ids.TryGetValue(content, out var id) ? id
                    : throw new InvalidCheckpointException($"{configPath}: eos_token '{content}' is not a token of {path}.");
        }
        foreach (var file in new[] { "config.json", "generation_config.json" })
        {
            var other = Path.Combine(directory, file);
            if (!File.Exists(other)) continue;
            var node = HfCheckpoint.ReadJsonObject(other)["eos_token_id"];
            var first = node is JsonArray list ? list.FirstOrDefault() : node;
            if (first is not null) return Id(first, other, "eos_token_id");
        }
        foreach (var name in new[] { "<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<eos>" })
            if (special.TryGetValue(name, out var id)) return id;
        throw new InvalidCheckpointException(
            $"{path}: no end-of-sequence token: give eos_token in tokenizer_config.json or eos_token_id in config.json.");
    }
}
