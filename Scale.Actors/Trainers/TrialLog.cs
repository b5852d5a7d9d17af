using System.Text.Json;

namespace Scale.Actors.Trainers;

/// <summary>
/// A trial's own log: one JSON object per line (time, sweep, trial, attempt, event, and the event's fields), appended
/// across attempts, beside the trial's checkpoints. Loss curves and post-mortems read it; `scale report` plots it.
/// </summary>
public sealed class TrialLog : IDisposable
{
    public const string FileName = "log.jsonl";

    private static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private readonly StreamWriter writer;
    private readonly string sweep, trial;
    private readonly int attempt;

    public TrialLog(string path, string sweep, string trial, int attempt)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
        (this.sweep, this.trial, this.attempt) = (sweep, trial, attempt);
    }

    public void Write(string @event, object fields)
    {
        var line = new Dictionary<string, object?>
        {
            ["time"] = DateTimeOffset.UtcNow.ToString("O"), ["sweep"] = sweep, ["trial"] = trial, ["attempt"] = attempt, ["event"] = @event,
        };
        foreach (var property in JsonSerializer.SerializeToElement(fields, Json).EnumerateObject()) line[property.Name] = property.Value;
        writer.WriteLine(JsonSerializer.Serialize(line, Json));
    }

    public void Dispose() => writer.Dispose();

    /// <summary>The loss of each step of the trial, the latest attempt's where attempts overlap.</summary>
    public static IReadOnlyList<(long Step, double Loss)> LossCurve(string path)
    {
        if (!File.Exists(path)) return [];
        var losses = new SortedDictionary<long, double>();
        foreach (var line in File.ReadLines(path))
        {
            if (line.Length == 0) continue;
            using var document = JsonDocument.Parse(line);
            var root = document.RootElement;
            if (root.GetProperty("event").GetString() != "step") continue;
            if (root.GetProperty("loss").ValueKind != JsonValueKind.Number) continue;
            losses[root.GetProperty("step").GetInt64()] = root.GetProperty("loss").GetDouble();
        }
        return losses.Select(kv => (kv.Key, kv.Value)).ToList();
    }
}
