using Scale.Model.Checkpoints;
using Scale.Model.Evaluation;
using Scale.Tests.Host;
using Scale.Tests.Model;
using static TorchSharp.torch;

namespace Scale.Tests.Experiments;

/// <summary>
/// Task scoring as lm-evaluation-harness does it: Scale's batched log-likelihoods against a reference written here (one
/// sequence at a time, no padding, the log-softmax summed by hand in double), the metrics from them, the task file's
/// checks, and `scale score` on a model directory.
/// </summary>
public sealed class TaskScoringTests
{
    private static readonly (string Context, string Continuation)[] Requests =
    [
        ("Ada Lovelace was born in", " London"),
        ("Ada Lovelace was born in ", "Paris"),          // trailing whitespace: it moves to the continuation
        ("", " the"),                                    // an empty context starts from the end-of-text token
        ("Her birthday is May", " 3 of the year 1815, and she worked at the museum"),
        ("X", " y"),
    ];

    /// <summary>The reference: each request alone through the model, log p(continuation | context) summed by hand.</summary>
    private static double Reference(Scale.Model.Transformer.CausalLM model, Scale.Model.Data.ITokenizer tokenizer, string context, string continuation)
    {
        // lm-evaluation-harness's split: trailing whitespace moves to the continuation, whose tokens are the whole text's after the context's.
        var trailing = context[context.TrimEnd().Length..];
        var contextIds = tokenizer.Encode(context.TrimEnd()).ToList();
        var continuationIds = tokenizer.Encode(context.TrimEnd() + trailing + continuation).Skip(contextIds.Count).ToList();
        if (contextIds.Count == 0) contextIds.Add(tokenizer.EndOfTextId);
        var tokens = contextIds.Concat(continuationIds).Select(i => (long)i).ToArray();
        using var noGrad = no_grad();
        using var logits = model.forward(tensor(tokens[..^1]).unsqueeze(0));
        var values = logits[0].to(ScalarType.Float64).data<double>().ToArray();
        int vocabulary = (int)logits.shape[2];
        double sum = 0;
        for (int p = contextIds.Count - 1; p < tokens.Length - 1; p++)
        {
            var row = values.AsSpan(p * vocabulary, vocabulary);
            double max = double.NegativeInfinity;
            foreach (var v in row) max = Math.Max(max, v);
            double total = 0;
            foreach (var v in row) total += Math.Exp(v - max);
            sum += row[(int)tokens[p + 1]] - max - Math.Log(total);
        }
        return sum;
    }

    [Fact]
    public void Batched_log_likelihoods_match_a_one_sequence_reference_to_1e_4()
    {
        using var task = new TinyBioTask();
        foreach (var batch in new[] { 1, 2, 32 })
        {
            var ours = TaskScoring.LogLikelihoods(task.Base, task.Tokenizer, Requests, batch);
            for (int i = 0; i < Requests.Length; i++)
                Assert.True(Math.Abs(ours[i] - Reference(task.Base, task.Tokenizer, Requests[i].Context, Requests[i].Continuation)) < 1e-4,
                            $"batch {batch}, request {i}: {ours[i]}");
        }
    }

    [Fact]
    public void Accuracy_takes_the_likeliest_choice_normalised_accuracy_the_likeliest_per_byte_with_their_standard_errors()
    {
        using var task = new TinyBioTask();
        var items = new List<TaskItem>
        {
            new("Ada Lovelace was born in", ["London", "Paris", "a small town by the sea"], 0, null),
            new("Her birthday is May", ["3", "14", "the first"], 1, null),
            new("She worked at the", ["museum", "bank"], 1, null),
        };
        var score = TaskScoring.Score(task.Base, task.Tokenizer, items, new TaskPrompting());
        var correct = new List<double>();
        var normalised = new List<double>();
        foreach (var item in items)
        {
            var ll = item.Choices!.Select(c => Reference(task.Base, task.Tokenizer, item.Context, " " + c)).ToList();
            correct.Add(ll.IndexOf(ll.Max()) == item.Gold ? 1 : 0);
            var perByte = ll.Select((v, i) => v / System.Text.Encoding.UTF8.GetByteCount(item.Choices[i])).ToList();
            normalised.Add(perByte.IndexOf(perByte.Max()) == item.Gold ? 1 : 0);
        }
        static double StandardError(List<double> x) => Math.Sqrt(x.Sum(v => (v - x.Average()) * (v - x.Average())) / (x.Count - 1) / x.Count);
        Assert.Equal(3, score.Items);
        var acc = Assert.Single(score.Metrics, m => m.Name == "acc");
        var accNorm = Assert.Single(score.Metrics, m => m.Name == "acc_norm");
        Assert.Equal(correct.Average(), acc.Value, 12);
        Assert.Equal(normalised.Average(), accNorm.Value, 12);
        Assert.Equal(StandardError(correct), acc.StandardError!.Value, 12);
        Assert.Equal(StandardError(normalised), accNorm.StandardError!.Value, 12);
    }

    [Fact]
    public void Few_shot_examples_are_drawn_by_the_seed_and_put_before_the_context_with_the_delimiters()
    {
        var pool = Enumerable.Range(0, 10).Select(i => new TaskItem($"Q{i}?", ["a", "b"], i % 2, null)).ToList();
        var shots = TaskPrompting.Draw(pool, 3, 1234);
        Assert.Equal(shots, TaskPrompting.Draw(pool, 3, 1234));
        Assert.Equal(3, shots.Distinct().Count());
        var prompting = new TaskPrompting { Shots = shots };
        Assert.Equal(string.Concat(shots.Select(s => $"{s.Context} {s.Choices![s.Gold]}\n\n")) + "Q?", prompting.Context(new TaskItem("Q?", ["x", "y"], 0, null)));
        Assert.Throws<ArgumentException>(() => TaskPrompting.Draw(pool, 11, 1));
    }

    [Theory]
    [InlineData("{\"choices\": [\"a\", \"b\"], \"gold\": 0}", "\"context\" is missing")]
    [InlineData("{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 2}", "\"gold\" is 2, outside the 2 choices")]
    [InlineData("{\"context\": \"c\", \"choices\": [], \"gold\": 0}", "\"choices\" must be an array of at least two strings")]
    [InlineData("{\"context\": \"c\", \"choices\": [\"a\", \"\"], \"gold\": 0}", "\"choices\"[1] is not a non-empty string")]
    [InlineData("{\"context\": \"c\", \"choices\": [\"a\", \"b\"]}", "\"gold\" is missing")]
    [InlineData("{\"context\": \"c\"}", "give either \"choices\"")]
    [InlineData("not json", "not a JSON object")]
    [InlineData("INVALID-UTF8", "not valid UTF-8")]
    public void A_malformed_task_file_is_refused_with_its_file_line_and_field_before_any_model_loads(string badLine, string expected)
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("bad.jsonl");
        var good = "{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\n";
        var bad = badLine == "INVALID-UTF8" ? [0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d] : System.Text.Encoding.UTF8.GetBytes(badLine);
        File.WriteAllBytes(file, [.. System.Text.Encoding.UTF8.GetBytes(good + good), .. bad, (byte)'\n']);
        // The model directory does not exist: the task's problem is found first.
        var result = ScaleProcess.Run("score", "--model", dir.Combine("no-model"), "--task", file);
        Assert.Equal(2, result.ExitCode);
        var line = Assert.Single(result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"{file}:3: ", line);
        Assert.Contains(expected, line);
    }

    [Fact]
    public void Scale_score_scores_a_model_directory_on_a_task_file_in_text_and_json()
    {
        using var dir = new TempDirectory();
        using var task = new TinyBioTask();
        var model = dir.Combine("model");
        HfCheckpoint.Save(task.Base, model);
        task.Tokenizer.Save(Path.Combine(model, "tokenizer.json"));
        var file = dir.Combine("born.jsonl");
        File.WriteAllLines(file, Enumerable.Range(0, 20).Select(i =>
            $"{{\"context\": \"Person {i} was born in\", \"choices\": [\"London\", \"Paris\", \"Rome\", \"Seoul\"], \"gold\": {i % 4}}}"));
        var text = ScaleProcess.Run("score", "--model", model, "--task", file);
        Assert.True(text.ExitCode == 0, text.Stderr);
        Assert.Matches(@"^born: acc \d\.\d{4} ± \d\.\d{4}, acc_norm \d\.\d{4} ± \d\.\d{4} \(20 items, 0-shot, ", text.Stdout);
        var json = ScaleProcess.Run("score", "--model", model, "--task", file, "--format", "json", "--fewshot", file, "--shots", "2");
        Assert.True(json.ExitCode == 0, json.Stderr);
        var root = System.Text.Json.JsonDocument.Parse(json.Stdout).RootElement;
        Assert.Equal(20, root.GetProperty("items").GetInt32());
        Assert.Equal(2, root.GetProperty("shots").GetInt32());
        Assert.InRange(root.GetProperty("metrics").GetProperty("acc").GetProperty("value").GetDouble(), 0, 1);

        // A task card gives the name, files, shots and metric; the command line may not give them again.
        var card = dir.Combine("born.hocon");
        File.WriteAllText(card, "task {\n  name = born-card\n  file = born.jsonl\n  fewshot = born.jsonl\n  shots = 3\n  metric = acc_norm\n}\n");
        var carded = ScaleProcess.Run("score", "--model", model, "--task", card, "--format", "json");
        Assert.True(carded.ExitCode == 0, carded.Stderr);
        var cardRoot = System.Text.Json.JsonDocument.Parse(carded.Stdout).RootElement;
        Assert.Equal(("born-card", 3, "acc_norm"), (cardRoot.GetProperty("task").GetString(), cardRoot.GetProperty("shots").GetInt32(), cardRoot.GetProperty("metric").GetString()));
        var refused = ScaleProcess.Run("score", "--model", model, "--task", card, "--shots", "1", "--fewshot", file);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("is a task card: it gives the few-shot file, shots and seed itself", refused.Stderr);
    }
}
