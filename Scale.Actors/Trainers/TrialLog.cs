using System.Text.Json;

namespace Scale.Actors.Trainers;

/// <summary>
/// A trial's own log: one JSON object per line (time, sweep, trial, attempt, event, and the event's fields), beside the
/// trial's checkpoints, a file per attempt (<c>log.{attempt}.jsonl</c>): two attempts of one trial running at once (a node
/// taken for lost that still trains, and its replacement) each write their own file and never interleave or overwrite
/// each other's lines. Loss curves and post-mortems read them in attempt order; `scale report` plots them.
/// </summary>
internal sealed class TrialLog : IDisposable
{
    /// <summary>The single file of logs written before attempts had files of their own; read first when present.</summary>
    public const string LegacyFileName = "log.jsonl";

    public static string FileFor(string trialDirectory, int attempt) => Path.Combine(trialDirectory, $"log.{attempt}.jsonl");

    /// <summary>A trial's log files, oldest attempt first.</summary>
    public static IReadOnlyList<string> Files(string trialDirectory)
    {
        if (!Directory.Exists(trialDirectory)) return [];
        var attempts = Directory.EnumerateFiles(trialDirectory, "log.*.jsonl")
            .Select(f => (File: f, Attempt: int.TryParse(Path.GetFileName(f).Split('.')[1], out int a) ? a : -1))
            .Where(f => f.Attempt >= 0).OrderBy(f => f.Attempt).Select(f => f.File);
        var legacy = Path.Combine(trialDirectory, LegacyFileName);
        return (File.Exists(legacy) ? attempts.Prepend(legacy) : attempts).ToList();
    }

    /// <summary>Every line of a trial's log, oldest attempt first.</summary>
    public static IEnumerable<string> Lines(string trialDirectory) => Files(trialDirectory).SelectMany(File.ReadLines);

    private static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private readonly StreamWriter writer;
    private readonly string sweep, trial;
    private readonly int attempt;

    public TrialLog(string trialDirectory, string sweep, string trial, int attempt)
    {
        Directory.CreateDirectory(trialDirectory);
        writer = new StreamWriter(new FileStream(FileFor(trialDirectory, attempt), FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
        (this.sweep, this.trial, this.attempt) = (sweep, trial, attempt);
    }

    /// <summary>Appends a line: the event's <paramref name="fields"/>, and the task suites' results as <c>tasks</c> where there are any.</summary>
    public void Write(string @event, object fields, IReadOnlyList<Scale.Model.Evaluation.TaskResult>? tasks = null)
    {
        var line = new Dictionary<string, object?>
        {
            ["time"] = DateTimeOffset.UtcNow.ToString("O"), ["sweep"] = sweep, ["trial"] = trial, ["attempt"] = attempt, ["event"] = @event,
        };
        foreach (var property in JsonSerializer.SerializeToElement(fields, Json).EnumerateObject()) line[property.Name] = property.Value;
        if (tasks is not null) line["tasks"] = tasks;
        writer.WriteLine(JsonSerializer.Serialize(line, Json));
    }

    public void Dispose() => writer.Dispose();

    /// <summary>The loss of each step of the trial, the latest attempt's where attempts overlap.</summary>
    public static IReadOnlyList<(long Step, double Loss)> LossCurve(string trialDirectory)
    {
        var losses = new SortedDictionary<long, double>();
        foreach (var line in Lines(trialDirectory))
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
