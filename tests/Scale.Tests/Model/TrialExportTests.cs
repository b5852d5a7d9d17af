using Scale.Model;
using Scale.Model.Checkpoints;
using Scale.Model.Training;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

public class TrialExportTests
{
    public static TheoryData<string> Methods => new("full", "freeze", "depth", "lora", "preserve", "adapt", "route");

    /// <summary>A trained trial: a few steps of <paramref name="name"/> on a tiny base, saved as a trial checkpoint.</summary>
    private static (Decoder Base, MethodSpec Method, CausalLM Model, string Checkpoint) Trained(string name, TempDirectory dir)
    {
        var baseModel = Decoder.Create(Tiny.Gqa with { TieWordEmbeddings = name == "lora" }, seed: 2).Freeze();
        var method = MethodSpec.Preset(name, headsUp: 2);
        // Route's default rule, calibrated as an experiment calibrates it (here, a threshold given): the export keeps the threshold.
        if (name == "route") method = method with { Expansion = method.Expansion! with { Routing = ExpansionSpec.DefaultRouting with { Calibrated = 2.5 } } };
        var model = method.Build(baseModel, seed: 4);
        using var session = new TrainingSession(model, new TrainingOptions { LearningRate = 3e-2, WarmupSteps = 0, TotalSteps = 6 });
        for (int step = 0; step < 6; step++) session.TrainStep([Tiny.Tokens(Tiny.Gqa, batch: 4, length: 9, seed: 300 + step)]);
        var checkpoint = dir.Combine("checkpoint");
        TrialCheckpoint.Save(checkpoint, session, dataPosition: 6);
        return (baseModel, method, model, checkpoint);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void An_exported_trial_loads_back_with_the_trained_models_logits(string name)
    {
        using var dir = new TempDirectory();
        var (baseModel, method, model, checkpoint) = Trained(name, dir);
        var tokens = Tiny.Tokens(Tiny.Gqa, batch: 2, length: 9, seed: 77);
        using var expected = model.forward(tokens);

        TrialExport.Write(baseModel, method, seed: 4, checkpoint, dir.Path, dir.Combine("export"));
        using var loaded = TrialExport.Load(dir.Combine("export"));
        using var actual = loaded.forward(tokens);

        Assert.True(Tiny.MaxAbsDiff(expected, actual) <= 1e-5, $"{name}: max abs diff {Tiny.MaxAbsDiff(expected, actual)}");
        bool scale = name is "preserve" or "adapt" or "route";
        Assert.Equal(scale, File.Exists(dir.Combine("export", TrialExport.ScaleFile)));
        if (!scale) Assert.IsType<Decoder>(HfCheckpoint.Load(dir.Combine("export")));   // a plain Hugging Face checkpoint of the family
        Assert.False(Directory.Exists(dir.Combine("export.partial")));
    }

    [Fact]
    public void A_route_export_generates_as_the_routed_model()
    {
        using var dir = new TempDirectory();
        var (baseModel, method, model, checkpoint) = Trained("route", dir);
        TrialExport.Write(baseModel, method, seed: 4, checkpoint, dir.Path, dir.Combine("export"));

        var loaded = (ScaleDecoder)TrialExport.Load(dir.Combine("export"));
        var prompt = new long[] { 3, 1, 4, 1, 5 };

        Assert.Equal(ExpansionSpec.DefaultRouting with { Calibrated = 2.5 }, loaded.Routing);
        Assert.Equal(Generation.Greedy(model, prompt, 8), Generation.Greedy(loaded, prompt, 8));
        Assert.Contains("already exists", Assert.Throws<ArgumentException>(() =>
            TrialExport.Write(baseModel, method, 4, checkpoint, dir.Path, dir.Combine("export"))).Message);
    }
}
