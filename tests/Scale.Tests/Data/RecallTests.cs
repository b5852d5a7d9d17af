using Scale.Model;
using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Training;
using Scale.Model.Transformer;

namespace Scale.Tests.Data;

public class RecallTests
{
    [Fact]
    public void A_small_model_trained_on_biographies_recalls_their_attributes_and_an_untrained_one_does_not()
    {
        var world = new BioWorld(BioLanguage.English, seed: 12);
        var people = world.DrawPopulation(8);
        var corpus = BioRenderer.Corpus(people, BioLanguage.English, renderings: 20, seed: 1);
        var tokenizer = ByteBpeTokenizer.Train(corpus, vocabSize: 420);
        var packed = new PackedSequences(corpus.Select(tokenizer.Encode), tokenizer.EndOfTextId, sequenceLength: 64);
        var config = new ModelConfig { VocabSize = tokenizer.VocabSize, HiddenSize = 64, NumLayers = 2, NumHeads = 4, IntermediateSize = 172 };
        var prompts = people.SelectMany(p => BioRenderer.Prompts(p, BioLanguage.English)).ToList();
        using var untrained = Decoder.Create(config, seed: 3);
        var model = MethodSpec.Preset("full").Build(Decoder.Create(config, seed: 3));
        var schedule = new BatchSchedule(packed.Count, batchSize: 16, seed: 5);
        using var session = new TrainingSession(model, new TrainingOptions { LearningRate = 3e-3, WarmupSteps = 20, TotalSteps = 300 });

        for (int step = 0; step < 300; step++) session.TrainStep([packed.Batch(schedule.IndicesFor(step))]);
        var trained = Metrics.AttributeRecall(model, tokenizer, prompts);
        var baseline = Metrics.AttributeRecall(untrained, tokenizer, prompts);

        Assert.Equal(6, trained.PerAttribute.Count);
        Assert.All(trained.PerAttribute, a => Assert.Equal(8, a.Total));
        Assert.True(trained.Recall >= 0.75, $"recall after training {trained.Recall:P0}");   // 88% measured; the margin absorbs thread-count differences
        Assert.True(trained.FirstTokenAccuracy >= trained.Recall);
        Assert.Equal(0, baseline.Recall);
        var batched = TeacherForcedRecall.Measure(model, tokenizer, prompts, batchSize: 7);
        Assert.Equal(trained.PerAttribute, batched.PerAttribute);   // teacher forcing answers what greedy decoding does
        Assert.Equal(baseline.PerAttribute, TeacherForcedRecall.Measure(untrained, tokenizer, prompts).PerAttribute);
    }

    [Fact]
    public void Korean_recall_reads_the_generated_text_so_a_particle_may_follow_the_value()
    {
        // One Korean sentence learnt by heart: the value 부산시 is followed by the particle 이다 with no space between.
        var person = new Person("김민준", new Dictionary<BioAttribute, string> { [BioAttribute.BirthCity] = "부산시" });
        const string sentence = "김민준의 고향은 부산시이다.";
        var corpus = Enumerable.Repeat(sentence, 40).ToList();
        var tokenizer = ByteBpeTokenizer.Train(corpus, vocabSize: 300);
        var packed = new PackedSequences(corpus.Select(tokenizer.Encode), tokenizer.EndOfTextId, sequenceLength: 32);
        var config = new ModelConfig { VocabSize = tokenizer.VocabSize, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64 };
        var model = MethodSpec.Preset("full").Build(Decoder.Create(config, seed: 3));
        var schedule = new BatchSchedule(packed.Count, batchSize: 4, seed: 5);
        using (var session = new TrainingSession(model, new TrainingOptions { LearningRate = 1e-2, WarmupSteps = 5, TotalSteps = 150 }))
            for (int step = 0; step < 150; step++) session.TrainStep([packed.Batch(schedule.IndicesFor(step))]);
        var prompt = new BioPrompt(person.Name, BioAttribute.BirthCity, "김민준의 고향은", "부산시");
        var continuation = tokenizer.Decode(Generation.Greedy(model, tokenizer.Encode(prompt.Prompt).Select(i => (long)i).ToList(), 6).Select(i => (int)i));

        Assert.StartsWith(" 부산시이다", continuation);                                                   // it has learnt the sentence
        Assert.Equal(1.0, Metrics.AttributeRecall(model, tokenizer, [prompt], particlesFollow: true).Recall);
        Assert.Equal(0.0, Metrics.AttributeRecall(model, tokenizer, [prompt]).Recall);                      // English's rule: no letter may follow
        Assert.Equal(1.0, Scale.Model.Experiments.TrialScoring.RecallOf(model, tokenizer, [prompt], BioLanguage.Korean).Recall);
    }
}
