using Scale.Model.Experiments;
using Scale.Model;
using Scale.Model.Training;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

public class TrainingTests
{
    private static List<double> Train(string method, int steps, TrainingOptions options, out CausalLM model, long seed = 3)
    {
        var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        model = MethodSpec.Preset(method).Build(baseModel, seed);
        using var session = new TrainingSession(model, options);
        var losses = new List<double>();
        for (int i = 0; i < steps; i++)
            losses.Add(session.TrainStep(Enumerable.Range(0, options.AccumulationSteps)
                .Select(m => Tiny.Tokens(Tiny.Mha, batch: 2, length: 9, seed: 1000 * i + m)).ToList()).Loss);
        return losses;
    }

    [Theory]
    [InlineData("full")]
    [InlineData("route")]
    public void Training_is_bit_for_bit_repeatable_under_a_seed(string method)
    {
        var options = new TrainingOptions { LearningRate = 5e-3, WarmupSteps = 2, TotalSteps = 8 };

        var first = Train(method, 8, options, out var a);
        var second = Train(method, 8, options, out var b);

        Assert.Equal(first, second);
        var bTensors = b.DistinctParameters().ToDictionary(p => p.Name, p => p.Parameter);
        foreach (var (name, p) in a.DistinctParameters()) Assert.True(Tiny.BitEqual(p, bTensors[name]), name);
    }

    [Fact]
    public void Loss_goes_down_on_a_repeated_batch()
    {
        var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var model = MethodSpec.Preset("preserve").Build(baseModel);
        using var session = new TrainingSession(model, new TrainingOptions { LearningRate = 1e-2, WarmupSteps = 0, TotalSteps = 30 });
        var batch = Tiny.Tokens(Tiny.Mha, batch: 2, length: 9);

        var first = session.TrainStep([batch]).Loss;
        double last = first;
        for (int i = 0; i < 29; i++) last = session.TrainStep([batch]).Loss;

        Assert.True(last < first - 0.5, $"loss {first} → {last}");
    }

    [Fact]
    public void Frozen_tensors_get_no_gradient_and_no_optimizer_state()
    {
        var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var model = MethodSpec.Preset("adapt").Build(baseModel);
        using var session = new TrainingSession(model, new TrainingOptions());

        session.TrainStep([Tiny.Tokens(Tiny.Mha)]);

        Assert.All(baseModel.parameters(), p => Assert.Null(p.grad));
        var state = session.Optimizer.StateTensors();
        Assert.Equal(2 * model.TrainableParameters().Count, state.Count);
        Assert.Equal(2 * model.TrainableParameterCount(), state.Values.Sum(t => t.numel()));
    }

    [Fact]
    public void Gradient_accumulation_of_two_halves_matches_one_full_batch()
    {
        var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var full = MethodSpec.Preset("full").Build(baseModel);
        var accumulated = MethodSpec.Preset("full").Build(baseModel);
        var batch = Tiny.Tokens(Tiny.Mha, batch: 4, length: 9);
        var options = new TrainingOptions { LearningRate = 1e-2, WarmupSteps = 0, TotalSteps = 1 };

        using (var s = new TrainingSession(full, options)) s.TrainStep([batch]);
        using (var s = new TrainingSession(accumulated, options with { AccumulationSteps = 2 }))
            s.TrainStep([batch.narrow(0, 0, 2), batch.narrow(0, 2, 2)]);

        var other = accumulated.DistinctParameters().ToDictionary(p => p.Name, p => p.Parameter);
        foreach (var (name, p) in full.DistinctParameters())
            Assert.True(Tiny.MaxAbsDiff(p, other[name]) < 1e-5, name);
    }

    [Fact]
    public void A_zero_group_learning_rate_keeps_that_group_fixed()
    {
        var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var model = MethodSpec.Preset("adapt").Build(baseModel);
        Tiny.Randomise(model, baseModel);
        var before = Tiny.Snapshot(model);
        var options = new TrainingOptions
        {
            LearningRate = 1e-2, WarmupSteps = 0, TotalSteps = 3, WeightDecay = 0,
            Rates = new GroupRates { W12 = 0.0 },
        };
        using var session = new TrainingSession(model, options);

        for (int i = 0; i < 3; i++) session.TrainStep([Tiny.Tokens(Tiny.Mha, seed: i)]);

        foreach (var (name, p) in model.TrainableParameters())
        {
            bool unchanged = Tiny.BitEqual(before[name], p);
            Assert.True(ParameterGroups.Of(name) == ParameterGroup.W12 ? unchanged : !unchanged, name);
        }
    }

    [Fact]
    public void Learning_rate_warms_up_linearly_then_follows_a_cosine_to_the_floor()
    {
        var options = new TrainingOptions { LearningRate = 1.0, WarmupSteps = 4, TotalSteps = 14, MinLearningRateRatio = 0.1 };

        Assert.Equal(0.25, options.LearningRateAt(0), 12);
        Assert.Equal(1.0, options.LearningRateAt(3), 12);
        Assert.Equal(1.0, options.LearningRateAt(4), 12);
        Assert.Equal(0.55, options.LearningRateAt(9), 12);
        Assert.Equal(0.1, options.LearningRateAt(14), 12);
        Assert.Equal(0.1, options.LearningRateAt(100), 12);
    }

    [Fact]
    public void A_non_finite_loss_stops_the_step_and_leaves_the_parameters_alone()
    {
        var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var model = MethodSpec.Preset("preserve").Build(baseModel);
        var headUp = model.TrainableParameters().Single(p => p.Name == "lm_head.weight_u").Parameter;
        using (no_grad()) headUp.fill_(float.NaN);
        var before = Tiny.Snapshot(model);
        using var session = new TrainingSession(model, new TrainingOptions());

        Assert.Throws<NonFiniteLossException>(() => session.TrainStep([Tiny.Tokens(Tiny.Mha)]));

        Assert.Equal(0, session.Step);
        foreach (var (name, p) in model.TrainableParameters().Where(p => p.Name != "lm_head.weight_u"))
            Assert.True(Tiny.BitEqual(before[name], p), name);
    }

    [Fact]
    public void Bad_training_options_name_the_field()
    {
        Assert.Contains("learning_rate", Assert.Throws<ArgumentException>(() => new TrainingOptions { LearningRate = 0 }.Validate()).Message);
        Assert.Contains("W12 must be zero or more", Assert.Throws<ArgumentException>(() =>
            new TrainingOptions { Rates = new GroupRates { W12 = -1 } }.Validate()).Message);
        Assert.Contains("unknown parameter 'lr_w13'", Assert.Throws<ArgumentException>(() =>
            TrialPlanner.Plan(new ExperimentSpec(), "adapt", new Dictionary<string, string> { ["lr_w13"] = "1" })).Message);
    }
}
