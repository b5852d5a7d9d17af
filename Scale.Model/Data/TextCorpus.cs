using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Scale.Model.Data;

/// <summary>
/// A folder of UTF-8 .txt files (one document each) and .jsonl files (one document per line, in the field
/// "text"), split into train and held-out by document with a hash of the document's source and position —
/// stable however the folder is listed and whatever else it holds.
/// </summary>
public sealed record TextCorpus(IReadOnlyList<string> Train, IReadOnlyList<string> HeldOut)
{
    public static TextCorpus Load(string folder, double heldOutFraction = 0.1)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"Corpus folder '{folder}' does not exist.");
        if (heldOutFraction is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(heldOutFraction), "must be within [0, 1)");
        var files = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new ArgumentException($"Corpus folder '{folder}' holds no .txt or .jsonl files.");
        var train = new List<string>();
        var heldOut = new List<string>();
        foreach (var file in files)
        {
            var relative = Path.GetRelativePath(folder, file);
            foreach (var (text, index) in Documents(file))
            {
                if (string.IsNullOrWhiteSpace(text)) continue;
                (IsHeldOut($"{relative}#{index}", heldOutFraction) ? heldOut : train).Add(text);
            }
        }
        if (train.Count == 0) throw new ArgumentException($"Corpus folder '{folder}' has no training documents.");
        return new TextCorpus(train, heldOut);
    }

    private static IEnumerable<(string Text, int Index)> Documents(string file)
    {
        if (file.EndsWith(".txt", StringComparison.OrdinalIgnoreCase))
        {
            yield return (File.ReadAllText(file, Encoding.UTF8), 0);
            yield break;
        }
        int line = 0;
        foreach (var json in File.ReadLines(file, Encoding.UTF8))
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

    private static bool IsHeldOut(string key, double fraction)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        return BitConverter.ToUInt32(hash, 0) / (double)uint.MaxValue < fraction;
    }
}
