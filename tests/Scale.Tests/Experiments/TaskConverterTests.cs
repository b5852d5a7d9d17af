using Scale.Model.Evaluation;
using Scale.Tests.Host;
using Scale.Tests.Model;

namespace Scale.Tests.Experiments;

/// <summary>
/// The converters from the Hugging Face datasets' layouts, on small fixtures written here in each layout (invented
/// content, the datasets' own field names and value types): each item's context, choices and gold answer as
/// lm-evaluation-harness's task definitions build them, written out by hand below.
/// </summary>
public sealed class TaskConverterTests
{
    private static IReadOnlyList<TaskItem> Convert(string layout, string records)
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("split.jsonl");
        File.WriteAllText(file, records);
        return TaskConverters.Convert(layout, file);
    }

    private static void Same(TaskItem item, string context, string[] choices, int gold, string? description = null)
    {
        Assert.Equal(context, item.Context);
        Assert.Equal(choices, item.Choices);
        Assert.Equal(gold, item.Gold);
        Assert.Equal(description, item.Description);
    }

    [Fact]
    public void Arc_asks_question_and_answer_and_finds_the_gold_by_its_label()
    {
        var items = Convert("arc", """
            {"id": "Q1", "question": "Which gas do plants take in?", "choices": {"text": ["oxygen", "carbon dioxide", "helium"], "label": ["A", "B", "C"]}, "answerKey": "B"}
            {"id": "Q2", "question": "What melts ice?", "choices": {"text": ["heat", "cold", "salt", "wind"], "label": ["1", "2", "3", "4"]}, "answerKey": "1"}
            """);
        Same(items[0], "Question: Which gas do plants take in?\nAnswer:", ["oxygen", "carbon dioxide", "helium"], 1);
        Same(items[1], "Question: What melts ice?\nAnswer:", ["heat", "cold", "salt", "wind"], 0);
    }

    [Fact]
    public void Hellaswag_joins_the_contexts_capitalises_the_second_and_cleans_wikihow_brackets()
    {
        var items = Convert("hellaswag", """
            {"ind": 4, "activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow.", "ctx_b": "THE man", "ctx": "", "endings": [" then leaves. ", "sits [header] down.", "is  gone", "waits"], "label": "3"}
            {"ind": 9, "activity_label": "Home and Garden", "ctx_a": "[header] How to plant a tree [title] Dig a hole.", "ctx_b": "fill it", "ctx": "", "endings": ["a", "b", "c", "d"], "label": 0}
            """);
        Same(items[0], "Removing ice from car: Then, the man writes over the snow. The man", ["then leaves.", "sits down.", "is gone", "waits"], 3);
        Same(items[1], "Home and Garden: How to plant a tree. Dig a hole. Fill it", ["a", "b", "c", "d"], 0);
    }

    [Fact]
    public void Mmlu_lists_the_lettered_choices_answers_with_a_letter_and_names_the_subject_once()
    {
        var items = Convert("mmlu", """
            {"question": "  What is 2 + 2?\n", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "22"], "answer": 1}
            """);
        Same(items[0], "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:", ["A", "B", "C", "D"], 1,
             "The following are multiple choice questions (with answers) about elementary mathematics.\n\n");
        var shots = new TaskPrompting { Shots = [items[0] with { Description = null }] };
        Assert.StartsWith("The following are multiple choice questions (with answers) about elementary mathematics.\n\nWhat is 2 + 2?",
                          shots.Context(items[0]));   // the description once, before the shots
    }

    [Fact]
    public void Kobest_subsets_build_their_korean_prompts()
    {
        Same(Convert("kobest-boolq", """{"paragraph": "서울은 한국의 수도이다.", "question": "서울은 수도인가?", "label": 1}""")[0],
             "서울은 한국의 수도이다. 질문: 서울은 수도인가? 답변: ", ["아니오", "예"], 1);
        var copa = Convert("kobest-copa", """
            {"premise": "물이 끓었다.", "question": "원인", "alternative_1": "불을 켰다.", "alternative_2": "얼음을 넣었다.", "label": 0}
            {"premise": "비가 왔다.", "question": "결과 ", "alternative_1": "땅이 젖었다.", "alternative_2": "해가 떴다.", "label": 0}
            """);
        Same(copa[0], "물이 끓었다.  왜냐하면", ["불을 켰다.", "얼음을 넣었다."], 0);
        Same(copa[1], "비가 왔다.  그래서", ["땅이 젖었다.", "해가 떴다."], 0);
        Same(Convert("kobest-hellaswag", """{"context": "그는 문을 열었다.", "ending_1": "가", "ending_2": "나", "ending_3": "다", "ending_4": "라", "label": 2}""")[0],
             "문장: 그는 문을 열었다.", ["가", "나", "다", "라"], 2);
        Same(Convert("kobest-sentineg", """{"sentence": "정말 좋았다.", "label": 1}""")[0], "문장: 정말 좋았다. 긍부정:", ["부정", "긍정"], 1);
        Same(Convert("kobest-wic", """{"word": "배", "context_1": "배가 아프다.", "context_2": "배를 탔다.", "label": 0}""")[0],
             "문장1: 배가 아프다. 문장2: 배를 탔다. 두 문장에서 배가 같은 뜻으로 쓰였나?", ["아니오", "예"], 0);
    }

    [Fact]
    public void A_json_array_reads_as_json_lines_do()
    {
        var items = Convert("kobest-sentineg", """[{"sentence": "별로였다.", "label": 0}, {"sentence": "최고!", "label": "1"}]""");
        Assert.Equal([0, 1], items.Select(i => i.Gold));
    }

    [Theory]
    [InlineData("arc", """{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}""", "\"answerKey\" E is not one of the labels")]
    [InlineData("hellaswag", """{"activity_label": "x", "ctx_a": "a", "ctx_b": "b", "endings": ["1", "2"], "label": ""}""", "\"label\" is not a label")]
    [InlineData("mmlu", """{"question": "q", "choices": ["a", "b", "c"], "answer": 0}""", "holds 3 answers, not 4")]
    [InlineData("kobest-copa", """{"premise": "p", "question": "이유", "alternative_1": "a", "alternative_2": "b", "label": 0}""", "not 원인 or 결과")]
    [InlineData("kobest-boolq", """{"paragraph": "p", "label": 1}""", "no \"question\"")]
    public void A_record_that_is_not_the_layout_is_refused_with_its_line_and_field(string layout, string record, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => Convert(layout, "\n" + record + "\n"));
        Assert.Contains("split.jsonl:2: ", error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void Scale_convert_task_writes_a_file_that_scale_score_reads()
    {
        using var dir = new TempDirectory();
        var input = dir.Combine("arc.jsonl");
        File.WriteAllText(input, """{"question": "Which is hot?", "choices": {"text": ["fire", "ice"], "label": ["A", "B"]}, "answerKey": "A"}""" + "\n");
        var converted = ScaleProcess.Run("convert-task", "arc", input, "--out", dir.Combine("out", "arc-task.jsonl"));
        Assert.True(converted.ExitCode == 0, converted.Stderr);
        Assert.Contains("Wrote 1 arc items", converted.Stdout);
        var item = Assert.Single(TaskFile.Read(dir.Combine("out", "arc-task.jsonl")));
        Assert.Equal(("Question: Which is hot?\nAnswer:", 0), (item.Context, item.Gold));
        var unknown = ScaleProcess.Run("convert-task", "piqa", input, "--out", dir.Combine("x.jsonl"));
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("Unknown task layout 'piqa'", unknown.Stderr);
    }
}
