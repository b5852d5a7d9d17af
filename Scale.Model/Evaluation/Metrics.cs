using Scale.Model.Data;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Evaluation;

/// <summary>Recall of one attribute over a set of people.</summary>
internal sealed record AttributeScore(BioAttribute Attribute, int Correct, int FirstTokenCorrect, int Total)
{
    /// <summary>Share of prompts whose greedy continuation reproduces the value exactly.</summary>
    public double Recall => Total == 0 ? 0 : (double)Correct / Total;

    /// <summary>Share of prompts whose first generated token is the value's first token.</summary>
    public double FirstTokenAccuracy => Total == 0 ? 0 : (double)FirstTokenCorrect / Total;
}

/// <summary>Recall per attribute and overall.</summary>
internal sealed record RecallReport(IReadOnlyList<AttributeScore> PerAttribute)
{
    public double Recall => Ratio(PerAttribute.Sum(a => a.Correct));
    public double FirstTokenAccuracy => Ratio(PerAttribute.Sum(a => a.FirstTokenCorrect));
    private double Ratio(int count) => PerAttribute.Sum(a => a.Total) is var total and > 0 ? (double)count / total : 0;
}

/// <summary>The stability–plasticity pair of a method (docs/method.md).</summary>
internal sealed record TradeOff(double Retention, double Acquisition, double Forgetting)
{
    /// <summary>Retention = score on old data after CPT; acquisition = score on new data; forgetting = base score − retention.</summary>
    public static TradeOff From(double baseOldScore, double oldScore, double newScore) => new(oldScore, newScore, baseOldScore - oldScore);
}

internal static class Metrics
{
    /// <summary>
    /// Attribute recall: for every prompt, greedy generation must reproduce " " + value exactly, and the value
    /// must end there (the next character, if any, is not a letter or digit, so "1952" does not pass for "19521").
    /// </summary>
    /// <remarks>
    /// With <paramref name="particlesFollow"/> (Korean), a letter may follow the value. A particle attaches to the word
    /// before it (부산시이다), and a byte-level BPE then merges the value's last syllables with the particle, so the
    /// value's own tokens need not occur in the text and teacher forcing on them does not apply. The check is then on
    /// the generated text, and only a digit may not follow the value.
    /// </remarks>
    public static RecallReport AttributeRecall(CausalLM model, ITokenizer tokenizer, IEnumerable<BioPrompt> prompts, bool particlesFollow = false)
    {
        var scores = new Dictionary<BioAttribute, (int Correct, int First, int Total)>();
        foreach (var prompt in prompts)
        {
            var promptIds = tokenizer.Encode(prompt.Prompt).Select(i => (long)i).ToList();
            var target = tokenizer.Encode(" " + prompt.Answer);
            var generated = Generation.Greedy(model, promptIds, target.Count + (particlesFollow ? 4 : 2), tokenizer.EndOfTextId);
            var text = tokenizer.Decode(generated.Select(i => (int)i));
            var expected = " " + prompt.Answer;
            bool exact = text.StartsWith(expected, StringComparison.Ordinal)
                         && (text.Length == expected.Length || (particlesFollow ? !char.IsDigit(text[expected.Length]) : !char.IsLetterOrDigit(text[expected.Length])));
            bool first = generated.Length > 0 && target.Count > 0 && generated[0] == target[0];
            var (c, f, t) = scores.GetValueOrDefault(prompt.Attribute);
            scores[prompt.Attribute] = (c + (exact ? 1 : 0), f + (first ? 1 : 0), t + 1);
        }
        return new RecallReport(scores.OrderBy(s => s.Key)
            .Select(s => new AttributeScore(s.Key, s.Value.Correct, s.Value.First, s.Value.Total)).ToList());
    }

    /// <summary>exp(mean next-token negative log-likelihood) over every target token of the sequences.</summary>
    public static double Perplexity(CausalLM model, ITokenWindows sequences, int batchSize = 16)
    {
        if (sequences.Count == 0) throw new ArgumentException("No held-out sequences to measure perplexity on.");
        double totalLoss = 0;
        long tokens = 0;
        using var noGrad = no_grad();
        for (int start = 0; start < sequences.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var indices = Enumerable.Range(start, Math.Min(batchSize, sequences.Count - start)).ToList();
            var batch = sequences.Batch(indices).to(model.Device);
            long t = batch.shape[1] - 1;
            var logits = model.forward(batch.narrow(1, 0, t));
            var loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), batch.narrow(1, 1, t).reshape(-1),
                                                   reduction: nn.Reduction.Sum);
            totalLoss += loss.item<float>();
            tokens += indices.Count * t;
        }
        return Math.Exp(totalLoss / tokens);
    }
}
