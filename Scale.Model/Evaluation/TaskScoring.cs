using Scale.Model.Data;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Evaluation;

/// <summary>A metric's mean over a task's items and its standard error (the sample standard deviation over √n; null for one item).</summary>
internal sealed record TaskMetric(
    [property: System.Text.Json.Serialization.JsonPropertyName("name")] string Name,
    [property: System.Text.Json.Serialization.JsonPropertyName("value")] double Value,
    [property: System.Text.Json.Serialization.JsonPropertyName("stderr")] double? StandardError);

/// <summary>A task's scores: accuracy and length-normalised accuracy (multiple choice) or exact match (generation).</summary>
internal sealed record TaskScore(int Items, IReadOnlyList<TaskMetric> Metrics);

/// <summary>How a task's prompts are built: the few-shot examples and the delimiters (lm-evaluation-harness's defaults).</summary>
internal sealed record TaskPrompting
{
    /// <summary>Between a context and its answer.</summary>
    public string TargetDelimiter { get; init; } = " ";
    /// <summary>Between one example (context, delimiter, answer) and the next.</summary>
    public string FewShotDelimiter { get; init; } = "\n\n";
    /// <summary>Solved examples put before every item, in this order.</summary>
    public IReadOnlyList<TaskItem> Shots { get; init; } = [];
    /// <summary>Where a generated answer ends.</summary>
    public string StopSequence { get; init; } = "\n";
    public int MaxNewTokens { get; init; } = 32;

    /// <summary><paramref name="count"/> examples drawn without replacement from <paramref name="pool"/> by <paramref name="seed"/>.</summary>
    public static IReadOnlyList<TaskItem> Draw(IReadOnlyList<TaskItem> pool, int count, int seed)
    {
        if (count > pool.Count) throw new ArgumentException($"{count} shots asked for, but the few-shot file holds {pool.Count} items.");
        var order = Enumerable.Range(0, pool.Count).ToArray();
        new Random(seed).Shuffle(order);
        return order.Take(count).Select(i => pool[i]).ToList();
    }

    public string Answer(TaskItem item) => item.Choices is { } choices ? choices[item.Gold] : item.Target!;

    /// <summary>The context the model sees for <paramref name="item"/>: its description, the shots, then its own context.</summary>
    public string Context(TaskItem item)
        => item.Description + string.Concat(Shots.Select(s => s.Context + TargetDelimiter + Answer(s) + FewShotDelimiter)) + item.Context;
}

/// <summary>
/// Scores task items the way lm-evaluation-harness does. Multiple choice: the log-likelihood of each choice (the target
/// delimiter and the choice, split from the context as <see cref="Encode"/> says) given the context; accuracy takes the most likely choice, length-normalised accuracy the most likely per byte of the
/// choice. Generation: greedy decoding up to the stop sequence, exact match after trimming whitespace.
/// </summary>
internal static class TaskScoring
{
    public static TaskScore Score(CausalLM model, ITokenizer tokenizer, IReadOnlyList<TaskItem> items, TaskPrompting prompting, int batchSize = 32)
    {
        var metrics = new List<TaskMetric>();
        var choice = items.Where(i => i.IsMultipleChoice).ToList();
        if (choice.Count > 0)
        {
            var requests = choice.Select(item => (Item: item, Context: prompting.Context(item)))
                .SelectMany(p => p.Item.Choices!.Select(c => (p.Context, Continuation: prompting.TargetDelimiter + c))).ToList();
            var likelihoods = LogLikelihoods(model, tokenizer, requests, batchSize);
            var correct = new List<double>();
            var normalised = new List<double>();
            int at = 0;
            foreach (var item in choice)
            {
                var scores = likelihoods.Skip(at).Take(item.Choices!.Count).ToList();
                at += item.Choices.Count;
                correct.Add(ArgMax(scores) == item.Gold ? 1 : 0);
                normalised.Add(ArgMax(scores.Select((s, i) => s / Math.Max(1, System.Text.Encoding.UTF8.GetByteCount(item.Choices[i]))).ToList()) == item.Gold ? 1 : 0);
            }
            metrics.Add(Mean("acc", correct));
            metrics.Add(Mean("acc_norm", normalised));
        }
        var generation = items.Where(i => !i.IsMultipleChoice).ToList();
        if (generation.Count > 0)
        {
            var exact = generation.Select(item => Generate(model, tokenizer, prompting.Context(item), prompting).Trim() == item.Target!.Trim() ? 1.0 : 0.0).ToList();
            metrics.Add(Mean("exact_match", exact));
        }
        return new TaskScore(items.Count, metrics);
    }

    private static int ArgMax(IReadOnlyList<double> values)
    {
        int best = 0;
        for (int i = 1; i < values.Count; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    private static TaskMetric Mean(string name, IReadOnlyList<double> values)
    {
        double mean = values.Average();
        double? stderr = values.Count > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1) / values.Count) : null;
        return new TaskMetric(name, mean, stderr);
    }

    /// <summary>
    /// The context's and the continuation's token ids as lm-evaluation-harness splits them: the context's trailing
    /// whitespace moves to the continuation, the whole text is encoded, and the continuation is what follows the
    /// context's own tokens in it (so a token that merges across the boundary is scored as the whole text has it). A
    /// context is encoded once however many continuations (an item's choices) follow it.
    /// </summary>
    private static (IReadOnlyList<int> Context, IReadOnlyList<int> Continuation) Encode(ITokenizer tokenizer, string context, string continuation,
                                                                                        Dictionary<string, IReadOnlyList<int>> contexts)
    {
        int trimmed = context.Length - context.TrimEnd().Length;
        if (trimmed > 0) (context, continuation) = (context[..^trimmed], context[^trimmed..] + continuation);
        if (!contexts.TryGetValue(context, out var contextIds)) contexts[context] = contextIds = tokenizer.Encode(context);
        var whole = tokenizer.Encode(context + continuation);
        var continuationIds = whole.Skip(contextIds.Count).ToList();
        if (continuationIds.Count == 0) throw new ArgumentException($"The continuation '{continuation}' has no tokens of its own after its context.");
        // An empty context starts from the end-of-text token, as a document does.
        return (contextIds.Count > 0 ? contextIds : [tokenizer.EndOfTextId], continuationIds);
    }

    /// <summary>
    /// The summed log-probability of each request's continuation given its context, in batches of up to
    /// <paramref name="batchSize"/> sequences padded on the right (a causal model's earlier positions never see the padding).
    /// A sequence longer than the model's positions loses the start of its context.
    /// </summary>
    public static IReadOnlyList<double> LogLikelihoods(CausalLM model, ITokenizer tokenizer, IReadOnlyList<(string Context, string Continuation)> requests, int batchSize = 32)
    {
        int limit = model.Config.MaxPositionEmbeddings;
        var contexts = new Dictionary<string, IReadOnlyList<int>>();
        var encoded = requests.Select(r =>
        {
            var (context, continuation) = Encode(tokenizer, r.Context, r.Continuation, contexts);
            if (continuation.Count >= limit) throw new ArgumentException($"A continuation of {continuation.Count} tokens does not fit the model's {limit} positions.");
            var all = context.Concat(continuation).Select(id => (long)id).ToArray();
            if (all.Length > limit + 1) all = all[^(limit + 1)..];
            return (Tokens: all, Continuation: continuation.Count);
        }).ToList();
        var results = new double[requests.Count];
        // Longest first, so that each batch pads little.
        var order = Enumerable.Range(0, encoded.Count).OrderByDescending(i => encoded[i].Tokens.Length).ToList();
        using var noGrad = no_grad();
        for (int start = 0; start < order.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var batch = order.Skip(start).Take(batchSize).ToList();
            int length = encoded[batch[0]].Tokens.Length - 1;
            var inputs = new long[batch.Count * length];
            var rows = new List<long>();
            var positions = new List<long>();
            var targets = new List<long>();
            for (int b = 0; b < batch.Count; b++)
            {
                var (tokens, continuation) = encoded[batch[b]];
                Array.Copy(tokens, 0, inputs, b * length, tokens.Length - 1);
                // The logits at position p predict token p + 1: the continuation's tokens are predicted from its positions.
                for (int p = tokens.Length - 1 - continuation; p < tokens.Length - 1; p++)
                {
                    rows.Add(b);
                    positions.Add(p);
                    targets.Add(tokens[p + 1]);
                }
            }
            var logits = model.forward(tensor(inputs, [batch.Count, length], device: model.Device));
            var picked = logits.index(TensorIndex.Tensor(tensor(rows.ToArray(), device: model.Device)), TensorIndex.Tensor(tensor(positions.ToArray(), device: model.Device)));
            var logProbabilities = picked.to(ScalarType.Float64).log_softmax(-1)
                .gather(1, tensor(targets.ToArray(), device: model.Device).unsqueeze(1)).squeeze(1).cpu().data<double>().ToArray();
            for (int k = 0; k < rows.Count; k++) results[batch[(int)rows[k]]] += logProbabilities[k];
        }
        return results;
    }

    private static string Generate(CausalLM model, ITokenizer tokenizer, string context, TaskPrompting prompting)
    {
        var prompt = tokenizer.Encode(context).Select(id => (long)id).ToList();
        if (prompt.Count == 0) prompt.Add(tokenizer.EndOfTextId);
        var ids = Generation.Greedy(model, prompt, prompting.MaxNewTokens, tokenizer.EndOfTextId);
        var text = tokenizer.Decode(ids.Where(id => id != tokenizer.EndOfTextId).Select(id => (int)id).ToList());
        int stop = prompting.StopSequence.Length > 0 ? text.IndexOf(prompting.StopSequence, StringComparison.Ordinal) : -1;
        return stop >= 0 ? text[..stop] : text;
    }
}
