using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Win32.SafeHandles;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Data;

/// <summary>Windows of T + 1 tokens to train or score on, by index: packed in memory or read from token shards.</summary>
internal interface ITokenWindows
{
    /// <summary>T: each window holds T + 1 tokens.</summary>
    int SequenceLength { get; }

    /// <summary>Number of whole windows.</summary>
    int Count { get; }

    /// <summary>The given windows as a (B, T + 1) int64 tensor.</summary>
    Tensor Batch(IReadOnlyList<int> indices);
}

/// <summary>One file of a shard set: its name, and how many tokens and documents it holds.</summary>
internal sealed record ShardFile(
    [property: JsonPropertyName("file")] string File,
    [property: JsonPropertyName("tokens")] long Tokens,
    [property: JsonPropertyName("documents")] long Documents);

/// <summary>
/// index.json of a token-shard directory (written by `scale tokenize`): the tokenizer the ids come from (its file's
/// SHA-256, so that shards are never read with another model's tokenizer), and each split's shard files.
/// </summary>
internal sealed record ShardIndex
{
    public const string FileName = "index.json";
    public const string FormatName = "scale-token-shards";

    [JsonPropertyName("format")] public string Format { get; init; } = FormatName;
    [JsonPropertyName("version")] public int Version { get; init; } = 1;
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; }
    [JsonPropertyName("end_of_text")] public int EndOfText { get; init; }
    [JsonPropertyName("tokenizer_sha256")] public string TokenizerSha256 { get; init; } = "";
    [JsonPropertyName("held_out_fraction")] public double HeldOutFraction { get; init; }
    [JsonPropertyName("train")] public IReadOnlyList<ShardFile> Train { get; init; } = [];
    [JsonPropertyName("held_out")] public IReadOnlyList<ShardFile> HeldOut { get; init; } = [];

    public static bool IsShardDirectory(string directory) => File.Exists(Path.Combine(directory, FileName));

    /// <summary>Reads and checks an index: format, sizes against the files on disk, and every path inside the directory.</summary>
    public static ShardIndex Read(string directory)
    {
        var path = Path.Combine(directory, FileName);
        ShardIndex index;
        try
        {
            index = JsonSerializer.Deserialize<ShardIndex>(File.ReadAllText(path)) ?? throw new JsonException("empty");
        }
        catch (JsonException e)
        {
            throw new InvalidCheckpointException($"{path}: not a valid shard index ({e.Message}).");
        }
        if (index.Format != FormatName || index.Version != 1)
            throw new InvalidCheckpointException($"{path}: format '{index.Format}' version {index.Version} is not Scale's token shards (format {FormatName}, version 1).");
        var root = Path.GetFullPath(directory) + Path.DirectorySeparatorChar;
        foreach (var shard in index.Train.Concat(index.HeldOut))
        {
            var file = Path.GetFullPath(Path.Combine(directory, shard.File));
            if (!file.StartsWith(root, StringComparison.Ordinal))
                throw new InvalidCheckpointException($"{path}: shard '{shard.File}' lies outside the shard directory.");
            if (!File.Exists(file)) throw new InvalidCheckpointException($"{path}: shard '{shard.File}' is missing.");
            long length = new FileInfo(file).Length;
            if (length != shard.Tokens * sizeof(uint))
                throw new InvalidCheckpointException($"{file}: {length} bytes, but the index says {shard.Tokens} tokens ({shard.Tokens * sizeof(uint)} bytes): the shard is cut short or damaged.");
        }
        if (index.Train.Count == 0) throw new InvalidCheckpointException($"{path}: no training shards.");
        return index;
    }

    /// <summary>SHA-256 of a tokenizer file, as index.json records it.</summary>
    public static string Hash(string tokenizerFile) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(tokenizerFile))).ToLowerInvariant();
}

/// <summary>
/// Token shards read in place: each shard is a flat little-endian uint32 array of token ids (documents each ended by
/// the end-of-text token), cut into windows of T + 1 tokens that never cross a shard's end. A batch reads just its
/// windows with positioned reads, so memory does not grow with the corpus (a mapped file would count every page it
/// touches in the process's resident set).
/// </summary>
internal sealed class TokenShards : ITokenWindows, IDisposable
{
    private readonly SafeFileHandle[] files;
    private readonly long[] firstWindow;   // the global index of each shard's first window, and the total at the end
    private readonly int vocabSize;

    private TokenShards(IReadOnlyList<string> paths, IReadOnlyList<long> tokens, int sequenceLength, int vocabSize)
    {
        SequenceLength = sequenceLength;
        this.vocabSize = vocabSize;
        files = paths.Select(p => File.OpenHandle(p, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess)).ToArray();
        firstWindow = new long[paths.Count + 1];
        for (int s = 0; s < paths.Count; s++) firstWindow[s + 1] = firstWindow[s] + tokens[s] / (sequenceLength + 1);
        long total = firstWindow[^1];
        if (total > int.MaxValue) throw new ArgumentException($"{total} windows of {sequenceLength + 1} tokens are more than Scale indexes ({int.MaxValue}); use longer sequences.");
        Count = (int)total;
    }

    public int SequenceLength { get; }
    public int Count { get; }

    /// <summary>Opens one split ("train" or "held_out") of the shard directory for windows of T + 1 tokens.</summary>
    public static TokenShards Open(string directory, ShardIndex index, bool heldOut, int sequenceLength)
    {
        var shards = heldOut ? index.HeldOut : index.Train;
        var opened = new TokenShards(shards.Select(s => Path.Combine(directory, s.File)).ToList(), shards.Select(s => s.Tokens).ToList(),
                                     sequenceLength, index.VocabSize);
        if (opened.Count == 0)
        {
            opened.Dispose();
            throw new ArgumentException($"{directory}: the {(heldOut ? "held-out" : "training")} shards hold fewer than {sequenceLength + 1} tokens, not one window.");
        }
        return opened;
    }

    public Tensor Batch(IReadOnlyList<int> indices)
    {
        int width = SequenceLength + 1;
        var data = new long[indices.Count * width];
        var buffer = new byte[width * sizeof(uint)];
        for (int b = 0; b < indices.Count; b++)
        {
            long window = indices[b];
            if (window < 0 || window >= Count) throw new ArgumentOutOfRangeException(nameof(indices), $"window {window} is not in [0, {Count}).");
            // The last shard whose first window is at or before this one: the shard that holds it (shards with no window are skipped).
            int shard = 0, last = files.Length - 1;
            while (shard < last)
            {
                int middle = (shard + last + 1) / 2;
                if (firstWindow[middle] <= window) shard = middle;
                else last = middle - 1;
            }
            long offset = (window - firstWindow[shard]) * width * sizeof(uint);
            int read = 0;
            while (read < buffer.Length)
            {
                int n = RandomAccess.Read(files[shard], buffer.AsSpan(read), offset + read);
                if (n == 0) throw new InvalidCheckpointException($"shard {shard}: ended before window {window} (the file was cut short after it was indexed).");
                read += n;
            }
            for (int t = 0; t < width; t++)
            {
                uint id = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(t * sizeof(uint)));
                if (id >= vocabSize) throw new InvalidCheckpointException($"shard {shard}: token id {id} at window {window} is outside the vocabulary of {vocabSize}.");
                data[b * width + t] = id;
            }
        }
        return tensor(data, [indices.Count, width]);
    }

    /// <summary>At most <paramref name="windows"/> windows spread evenly over all of them (for held-out scoring of a large split).</summary>
    public ITokenWindows Spread(int windows) => windows >= Count ? this : new Sample(this, windows);

    public void Dispose()
    {
        foreach (var file in files) file.Dispose();
    }

    private sealed class Sample(TokenShards shards, int count) : ITokenWindows
    {
        public int SequenceLength => shards.SequenceLength;
        public int Count => count;

        public Tensor Batch(IReadOnlyList<int> indices)
            => shards.Batch(indices.Select(i => (int)((long)i * shards.Count / count)).ToList());
    }
}

/// <summary>Writes a split's shards: token ids appended document by document, a new file every <see cref="ShardTokens"/> tokens.</summary>
internal sealed class ShardWriter(string directory, string split, long shardTokens) : IDisposable
{
    private readonly List<ShardFile> written = [];
    private FileStream? current;
    private long tokens, documents;

    public long ShardTokens { get; } = shardTokens;
    public IReadOnlyList<ShardFile> Files
    {
        get
        {
            Close();
            return written;
        }
    }

    public long TotalTokens => written.Sum(f => f.Tokens) + tokens;

    public void Add(IReadOnlyList<int> ids, int endOfText)
    {
        if (current is null || tokens >= ShardTokens) Open();
        var bytes = new byte[(ids.Count + 1) * sizeof(uint)];
        for (int i = 0; i < ids.Count; i++) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i * sizeof(uint)), (uint)ids[i]);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(ids.Count * sizeof(uint)), (uint)endOfText);
        current!.Write(bytes);
        tokens += ids.Count + 1;
        documents++;
    }

    private void Open()
    {
        Close();
        var name = $"{split}-{written.Count:D5}.bin";
        current = new FileStream(Path.Combine(directory, name), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
    }

    private void Close()
    {
        if (current is null) return;
        current.Flush(flushToDisk: true);
        written.Add(new ShardFile(Path.GetFileName(current.Name), tokens, documents));
        current.Dispose();
        current = null;
        (tokens, documents) = (0, 0);
    }

    public void Dispose() => Close();
}

/// <summary>What tokenizing a corpus has done so far.</summary>
internal sealed record TokenizeProgress(int FilesDone, int Files, long Documents, long Tokens, string? CurrentFile);

/// <summary>
/// `scale tokenize`: a corpus (folder or file of .txt, .jsonl and their .gz) through a model's tokenizer into token
/// shards, document by document, so that the corpus never has to fit in memory. Documents go to the training or
/// held-out split by the same hash as an in-memory text corpus. The shards are written into DIR.partial and moved to
/// DIR whole, so an interrupted run leaves nothing that looks finished.
/// </summary>
internal static class CorpusTokenizer
{
    public const long DefaultShardTokens = 64L << 20;   // 64 Mi tokens, 256 MiB a file

    public static ShardIndex Write(string corpus, string modelDirectory, string output, double heldOutFraction = 0.1,
                                   long shardTokens = DefaultShardTokens, IProgress<TokenizeProgress>? progress = null,
                                   CancellationToken cancellation = default)
    {
        if (heldOutFraction is < 0 or >= 1) throw new ArgumentException($"--held-out-fraction must be within [0, 1), got {heldOutFraction}.");
        if (shardTokens < 1) throw new ArgumentException($"--shard-tokens must be at least 1, got {shardTokens}.");
        if (Directory.Exists(output) || File.Exists(output)) throw new ArgumentException($"{output} already exists; give a new directory for the shards.");
        var config = Checkpoints.HfCheckpoint.ReadConfig(modelDirectory);
        using var tokenizer = HfTokenizer.Load(modelDirectory, config.VocabSize);
        var files = CorpusFiles.Files(corpus);
        var partial = output.TrimEnd(Path.DirectorySeparatorChar) + ".partial";
        if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        Directory.CreateDirectory(partial);
        try
        {
            ShardIndex index;
            using (var train = new ShardWriter(partial, "train", shardTokens))
            using (var heldOut = new ShardWriter(partial, "held-out", shardTokens))
            {
                long documents = 0;
                string? currentFile = null;
                int filesDone = 0;
                foreach (var document in CorpusFiles.Documents(corpus))
                {
                    cancellation.ThrowIfCancellationRequested();
                    var file = document.Key[..document.Key.LastIndexOf('#')];
                    if (file != currentFile)
                    {
                        if (currentFile is not null) filesDone++;
                        currentFile = file;
                    }
                    var writer = CorpusFiles.IsHeldOut(document.Key, heldOutFraction) ? heldOut : train;
                    writer.Add(tokenizer.EncodeDocument(document.Text), tokenizer.EndOfTextId);
                    if (++documents % 1000 == 0) progress?.Report(new(filesDone, files.Count, documents, train.TotalTokens + heldOut.TotalTokens, currentFile));
                }
                progress?.Report(new(files.Count, files.Count, documents, train.TotalTokens + heldOut.TotalTokens, null));
                index = new ShardIndex
                {
                    VocabSize = tokenizer.VocabSize, EndOfText = tokenizer.EndOfTextId,
                    TokenizerSha256 = ShardIndex.Hash(Path.Combine(modelDirectory, HfTokenizer.FileName)),
                    HeldOutFraction = heldOutFraction, Train = train.Files, HeldOut = heldOut.Files,
                };
            }
            if (index.Train.Sum(f => f.Tokens) == 0) throw new ArgumentException($"{corpus}: no training documents.");
            File.WriteAllText(Path.Combine(partial, ShardIndex.FileName), JsonSerializer.Serialize(index, new JsonSerializerOptions { WriteIndented = true }));
            Directory.Move(partial, output);
            return index;
        }
        catch
        {
            if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
            throw;
        }
    }
}
