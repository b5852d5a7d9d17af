using System.Security.Cryptography;
using System.Text;
using System.IO.Compression;
using System.Text.Json;

namespace Scale.Model.Data;

/// <summary>
/// A folder of UTF-8 .txt files (one document each) and .jsonl files (one document per line, in the field
/// "text"), either of them possibly gzip-compressed (.txt.gz, .jsonl.gz), split into train and held-out by document
/// with a hash of the document's source and position — stable however the folder is listed and whatever else it holds.
/// Held in memory: for corpora larger than memory, `scale tokenize` writes token shards (<see cref="TokenShards"/>).
/// </summary>
internal sealed record TextCorpus(IReadOnlyList<string> Train, IReadOnlyList<string> HeldOut)
{
    /// <summary>
    /// Documents set aside from training as well, disjoint from <see cref="HeldOut"/>: the old data's calibration slice, on
    /// which novelty-auto's threshold is measured (<see cref="Upscaling.RoutingCalibration"/>). The held-out split does not
    /// depend on it: the documents whose hash falls below the held-out fraction are held out, the next
    /// <c>calibrationFraction</c> of them calibrate.
    /// </summary>
    public IReadOnlyList<string> Calibration { get; init; } = [];

    public static TextCorpus Load(string folder, double heldOutFraction = 0.1, double calibrationFraction = 0)
    {
        if (heldOutFraction is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(heldOutFraction), "must be within [0, 1)");
        if (calibrationFraction < 0 || heldOutFraction + calibrationFraction >= 1)
            throw new ArgumentOutOfRangeException(nameof(calibrationFraction), "must be 0 or more, and leave documents to train on with the held-out fraction");
        var train = new List<string>();
        var heldOut = new List<string>();
        var calibration = new List<string>();
        foreach (var document in CorpusFiles.Documents(folder))
        {
            double at = CorpusFiles.SplitPoint(document.Key);
            (at < heldOutFraction ? heldOut : at < heldOutFraction + calibrationFraction ? calibration : train).Add(document.Text);
        }
        if (train.Count == 0) throw new ArgumentException($"Corpus folder '{folder}' has no training documents.");
        return new TextCorpus(train, heldOut) { Calibration = calibration };
    }
}

/// <summary>One document of a corpus: its text, and the key its held-out split is drawn from ("file#index").</summary>
internal sealed record CorpusDocument(string Key, string Text);

/// <summary>
/// Reads a corpus — a folder, or one file — document by document, never the whole of it at once. Text must be valid
/// UTF-8: a file that is not is refused naming it and the byte offset of the first bad byte (of the decompressed
/// stream, for .gz files), not skipped, so that what trains is what the user gave.
/// </summary>
internal static class CorpusFiles
{
    public static readonly IReadOnlyList<string> Extensions = [".txt", ".jsonl", ".txt.gz", ".jsonl.gz"];

    public static bool IsCorpusFile(string path) => Extensions.Any(e => path.EndsWith(e, StringComparison.OrdinalIgnoreCase));

    /// <summary>The corpus files of <paramref name="path"/> (itself if a file), in ordinal order of their paths.</summary>
    public static IReadOnlyList<string> Files(string path)
    {
        if (File.Exists(path))
            return IsCorpusFile(path) ? [path] : throw new ArgumentException($"{path}: not a corpus file (give {string.Join(", ", Extensions)}).");
        if (!Directory.Exists(path)) throw new DirectoryNotFoundException($"Corpus folder '{path}' does not exist.");
        var files = Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Where(IsCorpusFile).Order(StringComparer.Ordinal).ToList();
        return files.Count > 0 ? files : throw new ArgumentException($"Corpus folder '{path}' holds no {string.Join(", ", Extensions)} files.");
    }

    /// <summary>Every non-blank document, streamed.</summary>
    public static IEnumerable<CorpusDocument> Documents(string path)
    {
        var root = File.Exists(path) ? Path.GetDirectoryName(Path.GetFullPath(path))! : path;
        foreach (var file in Files(path))
        {
            var relative = Path.GetRelativePath(root, file);
            foreach (var (text, index) in Read(file))
                if (!string.IsNullOrWhiteSpace(text)) yield return new CorpusDocument($"{relative}#{index}", text);
        }
    }

    public static bool IsHeldOut(string key, double fraction) => SplitPoint(key) < fraction;

    /// <summary>Where a document falls in [0, 1], from a hash of its key: the splits are ranges of it.</summary>
    public static double SplitPoint(string key) => BitConverter.ToUInt32(SHA256.HashData(Encoding.UTF8.GetBytes(key)), 0) / (double)uint.MaxValue;

    private static Stream Open(string file)
    {
        Stream stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        return file.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(stream, CompressionMode.Decompress) : stream;
    }

    private static IEnumerable<(string Text, int Index)> Read(string file)
    {
        bool jsonl = file.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || file.EndsWith(".jsonl.gz", StringComparison.OrdinalIgnoreCase);
        using var reader = new StrictUtf8Reader(Open(file), file);
        if (!jsonl)
        {
            yield return (reader.ReadToEnd(), 0);
            yield break;
        }
        int line = 0;
        while (reader.ReadLine() is { } json)
        {
            line++;
            if (string.IsNullOrWhiteSpace(json)) continue;
            string? text;
            try
            {
                using var document = JsonDocument.Parse(json);
                text = document.RootElement.TryGetProperty("text", out var field) && field.ValueKind == JsonValueKind.String
                    ? field.GetString()
                    : throw new ArgumentException($"{file}:{line}: no string field \"text\".");
            }
            catch (JsonException e)
            {
                throw new ArgumentException($"{file}:{line}: not valid JSON ({e.Message}).");
            }
            yield return (text!, line);
        }
    }

    /// <summary>Decodes a stream as strict UTF-8, keeping count of the bytes read so that a bad byte is reported by its offset.</summary>
    private sealed class StrictUtf8Reader(Stream stream, string file) : IDisposable
    {
        private readonly Decoder decoder = new UTF8Encoding(false, throwOnInvalidBytes: true).GetDecoder();
        private readonly byte[] bytes = new byte[1 << 16];
        private readonly char[] chars = new char[(1 << 16) + 4];
        private readonly StringBuilder pending = new();
        private long offset;
        private bool ended;

        public string ReadToEnd()
        {
            while (Fill()) { }
            var all = pending.ToString();
            pending.Clear();
            return all;
        }

        public string? ReadLine()
        {
            while (true)
            {
                for (int i = 0; i < pending.Length; i++)
                    if (pending[i] == '\n')
                    {
                        var line = pending.ToString(0, i).TrimEnd('\r');
                        pending.Remove(0, i + 1);
                        return line;
                    }
                if (!Fill())
                {
                    if (pending.Length == 0) return null;
                    var last = pending.ToString().TrimEnd('\r');
                    pending.Clear();
                    return last;
                }
            }
        }

        private bool Fill()
        {
            if (ended) return false;
            int read;
            try
            {
                read = stream.Read(bytes, 0, bytes.Length);
            }
            catch (InvalidDataException e)
            {
                throw new ArgumentException($"{file}: not a valid gzip stream after {offset} bytes of text ({e.Message}).");
            }
            try
            {
                int decoded = decoder.GetChars(bytes, 0, read, chars, 0, flush: read == 0);
                pending.Append(chars, 0, decoded);
            }
            catch (DecoderFallbackException e)
            {
                throw new ArgumentException($"{file}: not valid UTF-8 at byte {offset + Math.Max(e.Index, 0)}{(file.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? " of the decompressed text" : "")}.");
            }
            offset += read;
            ended = read == 0;
            return !ended;
        }

        public void Dispose() => stream.Dispose();
    }
}
