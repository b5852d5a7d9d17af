using Scale.Model.Data;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Evaluation;

/// <summary>
/// Attribute recall computed in batches with teacher forcing. Greedy decoding reproduces the value's tokens
/// exactly when, and only when, the argmax after the prompt and after each value token is the next value
/// token; the argmax after the last value token must then not continue the value (no letter or digit).
/// So one causal forward pass over prompt + value, right-padded, answers what token-by-token generation
/// would, for a whole batch of prompts at once (padding on the right never affects earlier positions).
/// </summary>
internal static class TeacherForcedRecall
{
    public static RecallReport Measure(CausalLM model, ITokenizer tokenizer, IEnumerable<BioPrompt> prompts, int batchSize = 64)
    {
        var items = prompts.Select(p => (Prompt: p, PromptIds: tokenizer.Encode(p.Prompt), Target: tokenizer.Encode(" " + p.Answer))).ToList();
        var scores = new Dictionary<BioAttribute, (int Correct, int First, int Total)>();
        var continuesValue = ContinuationTokens(tokenizer);
        using var noGrad = no_grad();
        foreach (var chunk in items.Chunk(batchSize))
        {
            using var scope = NewDisposeScope();
            int length = chunk.Max(c => c.PromptIds.Count + c.Target.Count);
            var data = new long[chunk.Length * length];
            for (int b = 0; b < chunk.Length; b++)
            {
                var sequence = chunk[b].PromptIds.Concat(chunk[b].Target).ToArray();
                for (int t = 0; t < sequence.Length; t++) data[b * length + t] = sequence[t];
                for (int t = sequence.Length; t < length; t++) data[b * length + t] = tokenizer.EndOfTextId;   // right padding
            }
            var logits = model.forward(tensor(data, [chunk.Length, length]).to(model.Device));   // (B, L, V)
            var predicted = logits.argmax(-1).cpu().data<long>().ToArray();                      // (B, L) flattened
            for (int b = 0; b < chunk.Length; b++)
            {
                var (prompt, promptIds, target) = chunk[b];
                int start = promptIds.Count - 1;                       // the position whose prediction is the first value token
                bool first = predicted[b * length + start] == target[0];
                bool exact = true;
                for (int k = 0; k < target.Count && exact; k++) exact = predicted[b * length + start + k] == target[k];
                if (exact && start + target.Count < length)
                    exact = !continuesValue[(int)predicted[b * length + start + target.Count]];
                else if (exact)
                    exact = !continuesValue[(int)PredictAfter(model, promptIds.Concat(target).ToArray())];
                var (c, f, n) = scores.GetValueOrDefault(prompt.Attribute);
                scores[prompt.Attribute] = (c + (exact ? 1 : 0), f + (first ? 1 : 0), n + 1);
            }
        }
        return new RecallReport(scores.OrderBy(s => s.Key)
            .Select(s => new AttributeScore(s.Key, s.Value.Correct, s.Value.First, s.Value.Total)).ToList());
    }

    /// <summary>For every token id: does its text start with a letter or digit (so it would extend a value it follows)?</summary>
    private static bool[] ContinuationTokens(ITokenizer tokenizer)
    {
        var result = new bool[tokenizer.VocabSize];
        for (int id = 0; id < result.Length; id++)
        {
            if (id == tokenizer.EndOfTextId) continue;
            var text = tokenizer.Decode([id]);
            result[id] = text.Length > 0 && char.IsLetterOrDigit(text[0]);
        }
        return result;
    }

    private static long PredictAfter(CausalLM model, int[] sequence)
    {
        using var scope = NewDisposeScope();
        var logits = model.forward(tensor(sequence.Select(i => (long)i).ToArray()).unsqueeze(0).to(model.Device));
        return logits[0, -1].argmax().item<long>();
    }
}
