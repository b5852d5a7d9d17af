using System.Text;
using System.Text.Json;

namespace Scale.Model.Evaluation;

/// <summary>
/// One item of a task: a context and either choices with the gold one (multiple choice, scored by the log-likelihood
/// of each choice given the context) or a target string (generation, scored by exact match).
/// </summary>
internal sealed record TaskItem(string Context, IReadOnlyList<string>? Choices, int Gold, string? Target)
{
    public bool IsMultipleChoice => Choices is not null;

    /// <summary>Text put once before the whole prompt, few-shot examples included (a task's description, e.g. MMLU's subject line).</summary>
    public string? Description { get; init; }
}

/// <summary>
/// A task file: JSON Lines, one item per line — <c>{"context": "...", "choices": ["...", ...], "gold": 0}</c> for
/// multiple choice, <c>{"context": "...", "target": "..."}</c> for generation (lm-evaluation-harness's two output
/// types). Every line is checked before any model loads; the first problem is refused with one line naming the file,
/// the line and the field.
/// </summary>
internal static class TaskFile
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static IReadOnlyList<TaskItem> Read(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"{path}: no such task file.");
        var items = new List<TaskItem>();
        int number = 0;
        foreach (var bytes in Lines(File.ReadAllBytes(path)))
        {
            number++;
            string line;
            try
            {
                line = StrictUtf8.GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                throw new ArgumentException($"{path}:{number}: not valid UTF-8.");
            }
            if (string.IsNullOrWhiteSpace(line)) continue;
            items.Add(Parse(line, $"{path}:{number}"));
        }
        return items.Count > 0 ? items : throw new ArgumentException($"{path}: no items (one JSON object per line).");
    }

    private static IEnumerable<byte[]> Lines(byte[] all)
    {
        int start = 0;
        for (int i = 0; i <= all.Length; i++)
        {
            if (i < all.Length && all[i] != (byte)'\n') continue;
            int end = i > start && all[i - 1] == (byte)'\r' ? i - 1 : i;
            if (i < all.Length || end > start) yield return all[start..end];
            start = i + 1;
        }
    }

    private static TaskItem Parse(string line, string where)
    {
        JsonElement item;
        try
        {
            item = JsonDocument.Parse(line).RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{where}: not a JSON object: {e.Message}");
        }
        if (item.ValueKind != JsonValueKind.Object) throw new ArgumentException($"{where}: not a JSON object.");
        string Text(string field)
            => item.TryGetProperty(field, out var value) && value.ValueKind == JsonValueKind.String
                ? value.GetString()!
                : throw new ArgumentException($"{where}: \"{field}\" is missing or not a string.");
        var context = Text("context");
        string? description = item.TryGetProperty("description", out _) ? Text("description") : null;
        bool hasChoices = item.TryGetProperty("choices", out var choices), hasTarget = item.TryGetProperty("target", out _);
        if (hasChoices == hasTarget)
            throw new ArgumentException($"{where}: give either \"choices\" with \"gold\" (multiple choice) or \"target\" (generation).");
        if (hasTarget)
        {
            var target = Text("target");
            return target.Trim().Length > 0 ? new TaskItem(context, null, -1, target) { Description = description } : throw new ArgumentException($"{where}: \"target\" is empty.");
        }
        if (choices.ValueKind != JsonValueKind.Array || choices.GetArrayLength() < 2)
            throw new ArgumentException($"{where}: \"choices\" must be an array of at least two strings.");
        var list = new List<string>();
        foreach (var choice in choices.EnumerateArray())
        {
            if (choice.ValueKind != JsonValueKind.String || choice.GetString()!.Length == 0)
                throw new ArgumentException($"{where}: \"choices\"[{list.Count}] is not a non-empty string.");
            list.Add(choice.GetString()!);
        }
        if (!item.TryGetProperty("gold", out var gold) || gold.ValueKind != JsonValueKind.Number || !gold.TryGetInt32(out var index))
            throw new ArgumentException($"{where}: \"gold\" is missing or not an integer.");
        if (index < 0 || index >= list.Count)
            throw new ArgumentException($"{where}: \"gold\" is {index}, outside the {list.Count} choices (0 to {list.Count - 1}).");
        return new TaskItem(context, list, index, null) { Description = description };
    }

    /// <summary>Writes <paramref name="items"/> as a task file (JSON Lines, UTF-8) that <see cref="Read"/> reads back as they are.</summary>
    public static void Write(string path, IEnumerable<TaskItem> items)
    {
        var options = new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        using var writer = new StreamWriter(path, append: false, new UTF8Encoding(false));
        foreach (var item in items)
        {
            var line = new Dictionary<string, object>();
            if (item.Description is { } description) line["description"] = description;
            line["context"] = item.Context;
            if (item.Choices is { } choices)
            {
                line["choices"] = choices;
                line["gold"] = item.Gold;
            }
            else line["target"] = item.Target!;
            writer.Write(JsonSerializer.Serialize(line, options));
            writer.Write('\n');
        }
    }
}
