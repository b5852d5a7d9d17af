using Scale.Model;
using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Experiments;
using Scale.Model.Training;
using Scale.Model.Transformer;
using Scale.Tests.Model;

namespace Scale.Tests.Experiments;

public class TrialRunnerTests
{
    [Theory]
    [InlineData("route")]
    [InlineData("full")]
    public void A_trial_interrupted_after_a_checkpoint_and_resumed_ends_bit_for_bit_like_an_uninterrupted_one(string method)
    {
        using var dir = new TempDirectory();
        var world = new BioWorld(BioLanguage.English, 4);
        var (old, @new) = (world.DrawPopulation(4), world.DrawPopulation(4));
        var oldCorpus = BioRenderer.Corpus(old, BioLanguage.English, 6, 1);
        var tokenizer = ByteBpeTokenizer.Train(oldCorpus, 300);
        var config = new ModelConfig { VocabSize = tokenizer.VocabSize, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64 };
        using var baseModel = Decoder.Create(config, seed: 2).Freeze();
        var train = new PackedSequences(BioRenderer.Corpus(@new, BioLanguage.English, 6, 2).Select(tokenizer.Encode), tokenizer.EndOfTextId, 32);
        var oldPrompts = old.SelectMany(p => BioRenderer.Prompts(p, BioLanguage.English)).ToList();
        var newPrompts = @new.SelectMany(p => BioRenderer.Prompts(p, BioLanguage.English)).ToList();
        var runner = new TrialRunner(baseModel, tokenizer, train, oldPrompts, newPrompts,
                                     TeacherForcedRecall.Measure(baseModel, tokenizer, oldPrompts).Recall);
        var plan = new TrialPlan(MethodSpec.Preset(method), new PhaseSpec { Steps = 12, Batch = 4, SequenceLength = 32, WarmupSteps = 2 },
                                 Seed: 9, CheckpointEvery: 5);
        var straightLosses = new List<double>();
        var straight = runner.Run(plan, dir.Combine("straight"), onStep: s => straightLosses.Add(s.Loss));

        using var interrupt = new CancellationTokenSource();
        string? checkpoint = null;
        Assert.ThrowsAny<OperationCanceledException>(() => runner.Run(plan, dir.Combine("interrupted"),
            onCheckpoint: (path, step) => { if (step == 10) { checkpoint = path; interrupt.Cancel(); } },
            cancellation: interrupt.Token));
        var resumedLosses = new List<double>();
        var resumed = runner.Run(plan, dir.Combine("interrupted"), resumeFrom: checkpoint, onStep: s => resumedLosses.Add(s.Loss));

        Assert.NotNull(checkpoint);
        Assert.Equal(straightLosses.Skip(10), resumedLosses);
        Assert.Equal(straight, resumed with { TokensPerSecond = straight.TokensPerSecond });
    }
}
