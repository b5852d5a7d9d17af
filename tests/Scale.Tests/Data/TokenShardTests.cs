using System.IO.Compression;
using System.Text;
using Scale.Actors.Sweeps;
using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Scale.Model.Experiments;
using Scale.Model.Transformer;
using Scale.Tests.Model;

namespace Scale.Tests.Data;

public class TokenShardTests
{
    /// <summary>A Hugging Face-layout model directory with a tokenizer trained on <paramref name="texts"/>.</summary>
    internal static string ModelDirectory(TempDirectory dir, IEnumerable<string> texts, string name = "model")
    {
        var path = dir.Combine(name);
        var tokenizer = ByteBpeTokenizer.Train(texts, 320);
        using var model = Scale.Model.Transformer.Decoder.Create(new ModelConfig { VocabSize = tokenizer.VocabSize, HiddenSize = 16, NumLayers = 2, NumHeads = 2, IntermediateSize = 32 }, seed: 3);
        HfCheckpoint.Save(model, path);
        tokenizer.Save(Path.Combine(path, "tokenizer.json"));
        return path;
    }

    private static IReadOnlyList<string> Biographies(long world, int people)
        => BioRenderer.Corpus(new BioWorld(BioLanguage.English, world).DrawPopulation(people), BioLanguage.English, 4, 1);

    /// <summary>A corpus folder in every accepted form: .txt files, a .jsonl file and a gzip-compressed .jsonl.</summary>
    internal static string CorpusFolder(TempDirectory dir, IReadOnlyList<string> documents, string name)
    {
        var folder = Directory.CreateDirectory(dir.Combine(name)).FullName;
        int third = documents.Count / 3;
        for (int i = 0; i < third; i++) File.WriteAllText(Path.Combine(folder, $"doc{i:D3}.txt"), documents[i]);
        string Lines(IEnumerable<string> docs) => string.Join("\n", docs.Select(d => System.Text.Json.JsonSerializer.Serialize(new { text = d })));
        File.WriteAllText(Path.Combine(folder, "more.jsonl"), Lines(documents.Skip(third).Take(third)));
        using (var gz = new GZipStream(File.Create(Path.Combine(folder, "rest.jsonl.gz")), CompressionLevel.Fastest))
            gz.Write(Encoding.UTF8.GetBytes(Lines(documents.Skip(2 * third))));
        return folder;
    }

    [Fact]
    public void Shards_hold_the_windows_an_in_memory_corpus_packs()
    {
        using var dir = new TempDirectory();
        var documents = Biographies(1, 30);
        var model = ModelDirectory(dir, documents);
        var corpus = CorpusFolder(dir, documents, "corpus");

        var index = CorpusTokenizer.Write(corpus, model, dir.Combine("shards"), heldOutFraction: 0.2);
        using var shards = TokenShards.Open(dir.Combine("shards"), ShardIndex.Read(dir.Combine("shards")), heldOut: false, sequenceLength: 31);
        using var tokenizer = HfTokenizer.Load(model, 4096);
        var inMemory = TextCorpus.Load(corpus, 0.2);
        var packed = new PackedSequences(inMemory.Train.Select(tokenizer.EncodeDocument), tokenizer.EndOfTextId, 31);

        Assert.Equal(inMemory.Train.Count, index.Train.Sum(f => f.Documents));
        Assert.Equal(inMemory.HeldOut.Count, index.HeldOut.Sum(f => f.Documents));
        Assert.True(inMemory.HeldOut.Count > 0);
        Assert.Equal(packed.Count, shards.Count);
        var all = Enumerable.Range(0, packed.Count).ToList();
        Assert.True(Tiny.BitEqual(packed.Batch(all), shards.Batch(all)));
        Assert.False(Directory.Exists(dir.Combine("shards.partial")));
    }

    [Fact]
    public void Windows_never_cross_a_shards_end_and_a_cut_short_shard_is_refused_by_name()
    {
        using var dir = new TempDirectory();
        var documents = Biographies(2, 20);
        var model = ModelDirectory(dir, documents);
        var corpus = CorpusFolder(dir, documents, "corpus");

        var index = CorpusTokenizer.Write(corpus, model, dir.Combine("shards"), heldOutFraction: 0.1, shardTokens: 500);
        using (var shards = TokenShards.Open(dir.Combine("shards"), index, heldOut: false, sequenceLength: 15))
        {
            Assert.True(index.Train.Count > 3);
            Assert.Equal(index.Train.Sum(f => f.Tokens / 16), shards.Count);
            using var batch = shards.Batch(Enumerable.Range(0, shards.Count).ToList());
            Assert.Equal([(long)shards.Count, 16], batch.shape);
        }
        var first = dir.Combine("shards", index.Train[1].File);
        File.WriteAllBytes(first, File.ReadAllBytes(first)[..^8]);

        var error = Assert.Throws<InvalidCheckpointException>(() => ShardIndex.Read(dir.Combine("shards")));

        Assert.Contains(index.Train[1].File, error.Message);
        Assert.Contains("cut short", error.Message);
    }

    [Fact]
    public void Bad_input_is_refused_saying_where_and_leaves_nothing_half_written()
    {
        using var dir = new TempDirectory();
        var documents = Biographies(3, 10);
        var model = ModelDirectory(dir, documents);
        var corpus = CorpusFolder(dir, documents, "corpus");
        var bytes = Encoding.UTF8.GetBytes("A valid start, then a bad byte: ").Concat(new byte[] { 0xC3, 0x28 }).Concat(Encoding.UTF8.GetBytes(" and more.")).ToArray();
        File.WriteAllBytes(Path.Combine(corpus, "zz-bad.txt"), bytes);

        var invalid = Assert.Throws<ArgumentException>(() => CorpusTokenizer.Write(corpus, model, dir.Combine("out")));
        File.Delete(Path.Combine(corpus, "zz-bad.txt"));
        CorpusTokenizer.Write(corpus, model, dir.Combine("good"));
        var exists = Assert.Throws<ArgumentException>(() => CorpusTokenizer.Write(corpus, model, dir.Combine("good")));
        var index = File.ReadAllText(dir.Combine("good", "index.json"));
        File.WriteAllText(dir.Combine("good", "index.json"), index.Replace("\"train-00000.bin\"", "\"../escape.bin\""));
        var outside = Assert.Throws<InvalidCheckpointException>(() => ShardIndex.Read(dir.Combine("good")));

        Assert.Contains("zz-bad.txt: not valid UTF-8 at byte 32", invalid.Message);
        Assert.False(Directory.Exists(dir.Combine("out")));
        Assert.False(Directory.Exists(dir.Combine("out.partial")));
        Assert.Contains("already exists", exists.Message);
        Assert.Contains("outside the shard directory", outside.Message);
    }

    [Fact]
    public void The_order_of_a_very_large_epoch_is_a_permutation_computed_without_an_array()
    {
        foreach (int n in new[] { 1, 7, 1000, 4097 })
        {
            var seen = Enumerable.Range(0, n).Select(i => BatchSchedule.FeistelPermutation(i, n, key: 42)).ToHashSet();
            Assert.Equal(n, seen.Count);
            Assert.All(seen, x => Assert.InRange(x, 0, n - 1));
        }
        Assert.NotEqual(Enumerable.Range(0, 50).Select(i => BatchSchedule.FeistelPermutation(i, 1000, 1)),
                        Enumerable.Range(0, 50).Select(i => BatchSchedule.FeistelPermutation(i, 1000, 2)));
        var large = new BatchSchedule(BatchSchedule.MaterialisedLimit + 5, 8, seed: 3);
        Assert.Equal(large.IndicesFor(12345), new BatchSchedule(BatchSchedule.MaterialisedLimit + 5, 8, seed: 3).IndicesFor(12345));
        Assert.All(large.IndicesFor(7), i => Assert.InRange(i, 0, BatchSchedule.MaterialisedLimit + 4));
    }

    [Fact]
    public void A_text_experiment_on_an_imported_base_trains_from_shards_and_scores_held_out_perplexity()
    {
        using var dir = new TempDirectory();
        var (oldDocs, newDocs) = (Biographies(4, 16), BioRenderer.Corpus(new BioWorld(BioLanguage.Korean, 4).DrawPopulation(16), BioLanguage.Korean, 4, 1));
        var model = ModelDirectory(dir, oldDocs.Concat(newDocs));
        CorpusTokenizer.Write(CorpusFolder(dir, oldDocs, "old"), model, dir.Combine("old-shards"), 0.25);
        CorpusTokenizer.Write(CorpusFolder(dir, newDocs, "new"), model, dir.Combine("new-shards"), 0.25);
        var spec = ExperimentFiles.Parse($$"""
            experiment {
              name = shards
              old { kind = text, folder = "{{dir.Combine("old-shards")}}" }
              new { kind = text, folder = "{{dir.Combine("new-shards")}}" }
              continual { steps = 6, batch = 4, sequence-length = 31, warmup = 1 }
              methods = [frozen, preserve]
            }
            """, "shards.hocon").WithBaseModel(model);

        var result = TwoPhaseExperiment.Run(spec, dir.Combine("data"));
        var other = ModelDirectory(dir, oldDocs, "other");
        var mismatch = Assert.Throws<ArgumentException>(() => TwoPhaseExperiment.Run(spec.WithBaseModel(other), dir.Combine("data")));

        Assert.Equal("held-out perplexity", result.Metric);
        Assert.True(result.Methods[1].Acquisition < result.BaseNew, "training on the new shards lowers the new text's perplexity");
        Assert.Contains("another tokenizer", mismatch.Message);
    }
}
