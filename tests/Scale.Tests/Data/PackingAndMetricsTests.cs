using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Transformer;
using Scale.Tests.Model;
using static TorchSharp.torch;

namespace Scale.Tests.Data;

public class PackingAndMetricsTests
{
    [Fact]
    public void Documents_are_joined_by_end_of_text_and_cut_into_windows_of_T_plus_one()
    {
        var packed = new PackedSequences([[1, 2, 3], [4, 5], [6, 7, 8, 9]], endOfText: 0, sequenceLength: 3);

        Assert.Equal(3, packed.Count);                      // 12 tokens with separators → three windows of 4
        Assert.Equal([1, 2, 3, 0], packed[0].ToArray());
        Assert.Equal([4, 5, 0, 6], packed[1].ToArray());
        Assert.Equal([7, 8, 9, 0], packed[2].ToArray());
        Assert.Equal(new long[] { 2, 4 }, packed.Batch([2, 0]).shape);
    }

    [Fact]
    public void The_batch_of_a_step_depends_only_on_the_seed_and_the_step()
    {
        var first = new BatchSchedule(sequences: 10, batchSize: 4, seed: 3);
        var resumed = new BatchSchedule(sequences: 10, batchSize: 4, seed: 3);

        var run = Enumerable.Range(0, 12).Select(s => first.IndicesFor(s)).ToList();
        var later = Enumerable.Range(7, 5).Select(s => resumed.IndicesFor(s)).ToList();

        Assert.Equal(run.Skip(7), later);
        Assert.NotEqual(new BatchSchedule(10, 4, seed: 4).IndicesFor(0), run[0]);
    }

    [Fact]
    public void Each_epoch_visits_every_sequence_once()
    {
        var schedule = new BatchSchedule(sequences: 12, batchSize: 4, seed: 1);

        var epoch = Enumerable.Range(0, 3).SelectMany(s => schedule.IndicesFor(s)).Order();

        Assert.Equal(Enumerable.Range(0, 12), epoch);
    }

    [Fact]
    public void A_corpus_folder_splits_documents_deterministically_and_reads_jsonl_text_fields()
    {
        using var dir = new TempDirectory();
        for (int i = 0; i < 30; i++) File.WriteAllText(dir.Combine($"doc{i}.txt"), $"document {i}");
        File.WriteAllLines(dir.Combine("more.jsonl"), Enumerable.Range(0, 30).Select(i => $$"""{"text": "line {{i}}", "id": {{i}}}"""));
        File.WriteAllText(dir.Combine("ignored.csv"), "a,b");

        var first = TextCorpus.Load(dir.Path, heldOutFraction: 0.2);
        var second = TextCorpus.Load(dir.Path, heldOutFraction: 0.2);

        Assert.Equal(60, first.Train.Count + first.HeldOut.Count);
        Assert.InRange(first.HeldOut.Count, 3, 25);
        Assert.Equal(first.HeldOut, second.HeldOut);
        Assert.Contains("line 7", first.Train.Concat(first.HeldOut));
        Assert.Empty(first.Train.Intersect(first.HeldOut));
    }

    [Fact]
    public void A_jsonl_line_without_text_is_reported_with_file_and_line()
    {
        using var dir = new TempDirectory();
        File.WriteAllLines(dir.Combine("bad.jsonl"), ["""{"text": "fine"}""", """{"body": "no text"}"""]);

        var error = Assert.Throws<ArgumentException>(() => TextCorpus.Load(dir.Path));

        Assert.Contains("bad.jsonl:2", error.Message);
    }

    /// <summary>A model whose next-token distribution is the same fixed one at every position.</summary>
    private sealed class FixedDistribution(ModelConfig config, float[] probabilities) : CausalLM(nameof(FixedDistribution), config)
    {
        private readonly Tensor logProbabilities = tensor(probabilities).log();

        public override Tensor Forward(Tensor tokens, DecodeCache? cache)
            => logProbabilities.expand(tokens.shape[0], tokens.shape[1], probabilities.Length).clone();
    }

    [Fact]
    public void Perplexity_of_a_known_distribution_is_computed_exactly()
    {
        var config = Tiny.Mha with { VocabSize = 4 };
        float[] p = [0.5f, 0.25f, 0.125f, 0.125f];
        var model = new FixedDistribution(config, p);
        var packed = new PackedSequences([[0, 1, 2, 3, 0, 0, 1]], endOfText: 0, sequenceLength: 3);   // windows [0,1,2,3] [0,0,1,0]
        double expected = Math.Exp(-new[] { 1, 2, 3, 0, 1, 0 }.Average(t => Math.Log(p[t])));

        Assert.Equal(expected, Metrics.Perplexity(model, packed, batchSize: 1), 4);
        Assert.Equal(4.0, Metrics.Perplexity(new FixedDistribution(config, [0.25f, 0.25f, 0.25f, 0.25f]), packed), 4);
    }

    [Fact]
    public void Retention_acquisition_and_forgetting_follow_their_definitions()
    {
        var tradeOff = TradeOff.From(baseOldScore: 0.95, oldScore: 0.80, newScore: 0.60);

        Assert.Equal(0.80, tradeOff.Retention);
        Assert.Equal(0.60, tradeOff.Acquisition);
        Assert.Equal(0.15, tradeOff.Forgetting, 10);
    }
}
