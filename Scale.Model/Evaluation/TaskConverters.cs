using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Scale.Model.Evaluation;

/// <summary>
/// Task files from the Hugging Face datasets' JSON layouts of ARC, HellaSwag, MMLU and KoBEST's five subsets (JSON Lines,
/// or one JSON array, as the datasets library writes them), with the prompts lm-evaluation-harness builds for them:
/// the same context, choices and gold answer for every item, so that a model scores here as it would there (few-shot
/// examples aside: `scale score` draws them at random by its seed, where MMLU takes the first of its dev split).
/// Nothing is fetched: the user brings the files.
/// </summary>
internal static partial class TaskConverters
{
    public static readonly IReadOnlyList<string> Layouts =
        ["arc", "hellaswag", "mmlu", "kobest-boolq", "kobest-copa", "kobest-hellaswag", "kobest-sentineg", "kobest-wic"];

    [GeneratedRegex(@"\[.*?\]")]
    private static partial Regex Bracketed();

    public static IReadOnlyList<TaskItem> Convert(string layout, string path)
    {
        if (!Layouts.Contains(layout)) throw new ArgumentException($"Unknown task layout '{layout}': one of {string.Join(", ", Layouts)}.");
        if (!File.Exists(path)) throw new ArgumentException($"{path}: no such file.");
        var items = Records(path).Select(r => Item(layout, r.Record, r.Where)).ToList();
        return items.Count > 0 ? items : throw new ArgumentException($"{path}: no records.");
    }

    private static IEnumerable<(JsonElement Record, string Where)> Records(string path)
    {
        var text = File.ReadAllText(path);
        if (text.TrimStart().StartsWith('['))
        {
            JsonElement all;
            try
            {
                all = JsonDocument.Parse(text).RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new ArgumentException($"{path}: not JSON: {e.Message}");
            }
            int index = 0;
            foreach (var record in all.EnumerateArray()) yield return (record, $"{path}: record {index++}");
            yield break;
        }
        int number = 0;
        foreach (var line in text.Split('\n'))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement record;
            try
            {
                record = JsonDocument.Parse(line).RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new ArgumentException($"{path}:{number}: not a JSON object: {e.Message}");
            }
            yield return (record, $"{path}:{number}");
        }
    }

    private static TaskItem Item(string layout, JsonElement record, string where)
    {
        JsonElement Field(JsonElement at, string name)
            => at.ValueKind == JsonValueKind.Object && at.TryGetProperty(name, out var value) ? value : throw new ArgumentException($"{where}: no \"{name}\".");
        string Text(JsonElement at, string name)
            => Field(at, name) is { ValueKind: JsonValueKind.String } value ? value.GetString()! : throw new ArgumentException($"{where}: \"{name}\" is not a string.");
        // Labels come as numbers or as strings of digits (HellaSwag's "label": "2").
        int Label(string name)
        {
            var value = Field(record, name);
            if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n)) return n;
            if (value.ValueKind == JsonValueKind.String && int.TryParse(value.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out n)) return n;
            throw new ArgumentException($"{where}: \"{name}\" is not a label (an integer; a test split without labels cannot be scored).");
        }
        List<string> Texts(JsonElement at, string name)
            => Field(at, name) is { ValueKind: JsonValueKind.Array } list && list.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String)
                ? list.EnumerateArray().Select(e => e.GetString()!).ToList()
                : throw new ArgumentException($"{where}: \"{name}\" is not a list of strings.");
        TaskItem Choice(string context, IReadOnlyList<string> choices, int gold)
            => gold >= 0 && gold < choices.Count
                ? new TaskItem(context, choices, gold, null)
                : throw new ArgumentException($"{where}: the answer {gold} is not one of the {choices.Count} choices.");
        switch (layout)
        {
            case "arc":
            {
                var choices = Field(record, "choices");
                var labels = Texts(choices, "label");
                var answer = Text(record, "answerKey");
                return labels.IndexOf(answer) is var gold and >= 0
                    ? Choice($"Question: {Text(record, "question")}\nAnswer:", Texts(choices, "text"), gold)
                    : throw new ArgumentException($"{where}: \"answerKey\" {answer} is not one of the labels {string.Join(", ", labels)}.");
            }
            case "hellaswag":
            {
                var context = Text(record, "ctx_a") + " " + Capitalize(Text(record, "ctx_b"));
                return Choice(Clean(Text(record, "activity_label") + ": " + context), Texts(record, "endings").Select(Clean).ToList(), Label("label"));
            }
            case "mmlu":
            {
                var choices = Texts(record, "choices");
                if (choices.Count != 4) throw new ArgumentException($"{where}: \"choices\" holds {choices.Count} answers, not 4.");
                var context = $"{Text(record, "question").Trim()}\nA. {choices[0]}\nB. {choices[1]}\nC. {choices[2]}\nD. {choices[3]}\nAnswer:";
                var item = Choice(context, ["A", "B", "C", "D"], Label("answer"));
                return record.TryGetProperty("subject", out var subject) && subject.ValueKind == JsonValueKind.String
                    ? item with { Description = $"The following are multiple choice questions (with answers) about {subject.GetString()!.Replace('_', ' ')}.\n\n" }
                    : item;
            }
            case "kobest-boolq":
                return Choice($"{Text(record, "paragraph")} 질문: {Text(record, "question")} 답변: ", ["아니오", "예"], Label("label"));
            case "kobest-copa":
            {
                var connector = Text(record, "question").Trim() switch
                {
                    "원인" => " 왜냐하면",
                    "결과" => " 그래서",
                    var other => throw new ArgumentException($"{where}: \"question\" is '{other}', not 원인 or 결과."),
                };
                return Choice($"{Text(record, "premise")} {connector}", [Text(record, "alternative_1"), Text(record, "alternative_2")], Label("label"));
            }
            case "kobest-hellaswag":
                return Choice($"문장: {Text(record, "context")}",
                              [Text(record, "ending_1"), Text(record, "ending_2"), Text(record, "ending_3"), Text(record, "ending_4")], Label("label"));
            case "kobest-sentineg":
                return Choice($"문장: {Text(record, "sentence")} 긍부정:", ["부정", "긍정"], Label("label"));
            default:   // kobest-wic
                return Choice($"문장1: {Text(record, "context_1")} 문장2: {Text(record, "context_2")} 두 문장에서 {Text(record, "word")}가 같은 뜻으로 쓰였나?",
                              ["아니오", "예"], Label("label"));
        }
    }

    /// <summary>As Python's str.capitalize: the first character upper case, the rest lower.</summary>
    private static string Capitalize(string text)
        => text.Length == 0 ? text : char.ToUpperInvariant(text[0]) + text[1..].ToLowerInvariant();

    /// <summary>HellaSwag's clean-up of WikiHow's artefacts: trimmed, " [title]" as a sentence end, other brackets gone, double spaces single.</summary>
    private static string Clean(string text)
    {
        text = text.Trim().Replace(" [title]", ". ", StringComparison.Ordinal);
        return Bracketed().Replace(text, "").Replace("  ", " ", StringComparison.Ordinal);
    }
}
