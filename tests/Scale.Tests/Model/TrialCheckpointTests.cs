using Scale.Model;
using Scale.Model.Checkpoints;
using Scale.Model.Training;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

public class TrialCheckpointTests
{
    private static readonly TrainingOptions Options = new() { LearningRate = 5e-3, WarmupSteps = 2, TotalSteps = 10 };

    private static Tensor Batch(int step) => Tiny.Tokens(Tiny.Mha, batch: 2, length: 9, seed: 500 + step);

    private static (CausalLM Model, TrainingSession Session) NewTrial(Decoder baseModel, string method)
    {
        var model = MethodSpec.Preset(method).Build(baseModel, seed: 6);
        return (model, new TrainingSession(model, Options));
    }

    [Theory]
    [InlineData("preserve")]
    [InlineData("route")]
    [InlineData("lora")]
    [InlineData("full")]
    public void Resuming_from_a_checkpoint_continues_bit_for_bit_as_if_never_interrupted(string method)
    {
        using var dir = new TempDirectory();
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var (straight, straightSession) = NewTrial(baseModel, method);
        var straightLosses = Enumerable.Range(0, 10).Select(i => straightSession.TrainStep([Batch(i)]).Loss).ToList();

        var (first, firstSession) = NewTrial(baseModel, method);
        for (int i = 0; i < 5; i++) firstSession.TrainStep([Batch(i)]);
        TrialCheckpoint.Save(dir.Combine("ckpt"), firstSession, dataPosition: 5);
        var (resumed, resumedSession) = NewTrial(baseModel, method);
        var state = TrialCheckpoint.Load(dir.Combine("ckpt"), resumedSession);
        var resumedLosses = Enumerable.Range((int)state.DataPosition, 5).Select(i => resumedSession.TrainStep([Batch(i)]).Loss).ToList();

        Assert.Equal(5, state.Step);
        Assert.Equal(straightLosses.Skip(5), resumedLosses);
        var finals = resumed.DistinctParameters().ToDictionary(p => p.Name, p => p.Parameter);
        foreach (var (name, p) in straight.DistinctParameters()) Assert.True(Tiny.BitEqual(p, finals[name]), name);
    }

    [Fact]
    public void A_trial_checkpoint_holds_only_the_trainable_tensors()
    {
        using var dir = new TempDirectory();
        using var baseModel = Decoder.Create(Tiny.Mha with { HiddenSize = 32, NumHeads = 4, IntermediateSize = 96, VocabSize = 64 }, seed: 2);
        var (model, session) = NewTrial(baseModel, "preserve");
        session.TrainStep([randint(0, 64, [2, 9])]);

        TrialCheckpoint.Save(dir.Combine("ckpt"), session, 1);
        HfCheckpoint.Save(baseModel, dir.Combine("base"));

        var names = SafetensorsFile.ReadHeader(dir.Combine("ckpt", TrialCheckpoint.TrainableFile)).Keys.Order();
        Assert.Equal(model.TrainableParameters().Select(p => p.Name).Order(), names);
        Assert.True(new FileInfo(dir.Combine("ckpt", TrialCheckpoint.TrainableFile)).Length
                    < new FileInfo(dir.Combine("base", HfCheckpoint.WeightsFile)).Length);
    }

    [Fact]
    public void A_checkpoint_of_another_method_is_rejected_and_the_session_is_left_as_it_was()
    {
        using var dir = new TempDirectory();
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var (_, preserveSession) = NewTrial(baseModel, "preserve");
        preserveSession.TrainStep([Batch(0)]);
        TrialCheckpoint.Save(dir.Combine("ckpt"), preserveSession, 1);
        var (adapt, adaptSession) = NewTrial(baseModel, "adapt");
        var before = Tiny.Snapshot(adapt);

        var error = Assert.Throws<InvalidCheckpointException>(() => TrialCheckpoint.Load(dir.Combine("ckpt"), adaptSession));

        Assert.Contains("missing tensors: layers.0.self_attn.q_proj.w12", error.Message);
        Assert.Equal(0, adaptSession.Step);
        foreach (var (name, p) in adapt.DistinctParameters()) Assert.True(Tiny.BitEqual(before[name], p), name);
    }

    [Fact]
    public void A_corrupt_checkpoint_file_is_rejected_without_touching_the_session()
    {
        using var dir = new TempDirectory();
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var (_, session) = NewTrial(baseModel, "preserve");
        session.TrainStep([Batch(0)]);
        TrialCheckpoint.Save(dir.Combine("ckpt"), session, 1);
        var file = dir.Combine("ckpt", TrialCheckpoint.OptimizerFile);
        File.WriteAllBytes(file, File.ReadAllBytes(file)[..200]);
        var (fresh, freshSession) = NewTrial(baseModel, "preserve");
        var before = Tiny.Snapshot(fresh);

        var error = Assert.Throws<InvalidCheckpointException>(() => TrialCheckpoint.Load(dir.Combine("ckpt"), freshSession));

        Assert.Contains(TrialCheckpoint.OptimizerFile, error.Message);
        foreach (var (name, p) in fresh.DistinctParameters()) Assert.True(Tiny.BitEqual(before[name], p), name);
    }

    [Fact]
    public void Saving_over_an_existing_checkpoint_replaces_it_whole_and_leaves_no_partial_files()
    {
        using var dir = new TempDirectory();
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var (_, session) = NewTrial(baseModel, "adapt");
        session.TrainStep([Batch(0)]);
        TrialCheckpoint.Save(dir.Combine("ckpt"), session, 1);
        session.TrainStep([Batch(1)]);

        TrialCheckpoint.Save(dir.Combine("ckpt"), session, 2);

        var (_, other) = NewTrial(baseModel, "adapt");
        Assert.Equal(2, TrialCheckpoint.Load(dir.Combine("ckpt"), other).DataPosition);
        Assert.Equal(["ckpt"], Directory.GetDirectories(dir.Path).Select(Path.GetFileName));
    }
}
