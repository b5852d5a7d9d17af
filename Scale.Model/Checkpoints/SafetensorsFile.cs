using System.Text.Json;
using Scale.Model.Transformer;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Scale.Model.Checkpoints;

/// <summary>
/// Reads and writes safetensors through TorchSharp.PyBridge, after checking the file's own header: a
/// truncated or corrupt file is reported by name and reason instead of failing somewhere inside the loader.
/// Writes go to a temporary file that replaces the target only once complete.
/// </summary>
internal static class SafetensorsFile
{
    public sealed record Entry(string Dtype, long[] Shape, long Begin, long End);

    private static readonly Dictionary<string, int> DtypeBytes = new()
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1,
        ["U8"] = 1, ["BOOL"] = 1,
    };

    /// <summary>The largest header the format allows (100 MB): a longer one is refused before it is read into memory.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>The tensor directory of a safetensors file, checked against the file's length.</summary>
    public static IReadOnlyDictionary<string, Entry> ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new InvalidCheckpointException($"{path}: file not found.");
        using var stream = File.OpenRead(path);
        long length = stream.Length;
        if (length < 8) throw Bad(path, $"only {length} bytes, too short for a safetensors header");
        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        long headerLength = BitConverter.ToInt64(prefix);
        if (headerLength <= 0 || headerLength > length - 8)
            throw Bad(path, $"header claims {headerLength} bytes but the file holds {length - 8} after the length field (truncated?)");
        if (headerLength > MaxHeaderBytes)
            throw Bad(path, $"header claims {headerLength:N0} bytes, more than the format's limit of {MaxHeaderBytes:N0}");
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        long dataLength = length - 8 - headerLength;
        var entries = new Dictionary<string, Entry>();
        try
        {
            using var json = JsonDocument.Parse(header);
            foreach (var property in json.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__") continue;
                var dtype = property.Value.GetProperty("dtype").GetString()!;
                var shape = property.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var offsets = property.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0])
                    throw Bad(path, $"tensor {property.Name} has invalid data_offsets");
                if (offsets[1] > dataLength)
                    throw Bad(path, $"tensor {property.Name} needs data up to byte {offsets[1]} but only {dataLength} bytes follow the header (truncated file)");
                if (DtypeBytes.TryGetValue(dtype, out int size) && shape.Aggregate(1L, (a, b) => a * b) * size != offsets[1] - offsets[0])
                    throw Bad(path, $"tensor {property.Name} of shape [{string.Join(", ", shape)}] and dtype {dtype} does not fit its {offsets[1] - offsets[0]} bytes");
                entries[property.Name] = new Entry(dtype, shape, offsets[0], offsets[1]);
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
        {
            throw Bad(path, $"the header is not valid safetensors JSON ({e.Message})");
        }
        return entries;
    }

    /// <summary>Loads every tensor (on the CPU, in its stored dtype) after checking the header.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        ReadHeader(path);
        try
        {
            return Safetensors.LoadStateDict(path);
        }
        catch (Exception e) when (e is not InvalidCheckpointException)
        {
            throw Bad(path, e.Message);
        }
    }

    /// <summary>Writes the tensors to <paramref name="path"/>, atomically and durably: readers see the old file or the whole new one (its data flushed to the disk before the rename).</summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors)
    {
        var temp = path + ".partial";
        try
        {
            Safetensors.SaveStateDict(temp, tensors.ToDictionary(t => t.Key, t => t.Value.detach().contiguous().cpu()));
            Durable.SyncFile(temp);
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    private static InvalidCheckpointException Bad(string path, string reason) => new($"{path}: {reason}.");
}
