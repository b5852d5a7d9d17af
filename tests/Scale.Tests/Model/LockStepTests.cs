using Scale.Model;
using Scale.Model.Checkpoints;
using Scale.Model.Experiments;
using Scale.Model.Training;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using Scale.Tests.Experiments;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

public class LockStepTests
{
    private static readonly ModelConfig ThreeLayers = Tiny.Gqa with { NumLayers = 3 };

    public static TheoryData<string, int> Expansions => new()
    {
        { "preserve", 3 },       // no W12 anywhere: every block and the head from the trace
        { "adapt-last", 2 },     // W12 in the last block: the two below from the trace, the last run whole
        { "route-top-two", 1 },  // routed, W12 in blocks 1-2
    };

    private static ExpansionSpec SpecFor(string name) => name switch
    {
        "preserve" => ExpansionSpec.Preserve(headsUp: 1),
        "adapt-last" => ExpansionSpec.Adapt(headsUp: 1, firstLayer: 2),
        _ => ExpansionSpec.Route(headsUp: 1, firstLayer: 1),
    };

    [Theory]
    [MemberData(nameof(Expansions))]
    public void A_training_step_on_the_bases_trace_is_the_same_bits_as_the_models_own_step(string expansion, int depth)
    {
        using var baseModel = Decoder.Create(ThreeLayers, seed: 3).Freeze();
        var alone = ScaleDecoder.Upscale(baseModel, SpecFor(expansion), seed: 5);
        var traced = ScaleDecoder.Upscale(baseModel, SpecFor(expansion), seed: 5);
        Tiny.Randomise(alone, baseModel);
        Tiny.Randomise(traced, baseModel);   // W12 and H_u non-zero, so every term of the step matters
        var options = new TrainingOptions { LearningRate = 1e-2, WarmupSteps = 0, TotalSteps = 6 };
        using var aloneSession = new TrainingSession(alone, options);
        using var tracedSession = new TrainingSession(traced, options);
        Assert.Equal(depth, traced.TraceDepth);

        for (int step = 0; step < 6; step++)
        {
            using var batch = Tiny.Tokens(ThreeLayers, batch: 3, length: 10, seed: 100 + step);
            var own = aloneSession.TrainStep([batch]);
            BaseTrace? trace = null;
            var shared = tracedSession.TrainStep([batch], inputs => trace = baseModel.Trace(inputs, depth));
            trace!.Dispose();
            Assert.Equal(own.Loss, shared.Loss);
            Assert.Equal(own.GradientNorm, shared.GradientNorm);
        }
        var (a, b) = (Tiny.Snapshot(alone), Tiny.Snapshot(traced));
        Assert.All(a, p => Assert.True(Tiny.BitEqual(p.Value, b[p.Key]), $"{expansion}: {p.Key} differs"));
        TrialModels.ReleaseOwnTensors(alone, baseModel);
        TrialModels.ReleaseOwnTensors(traced, baseModel);
    }

    [Fact]
    public void A_trace_too_shallow_for_the_model_is_refused()
    {
        using var baseModel = Decoder.Create(ThreeLayers, seed: 3).Freeze();
        var model = ScaleDecoder.Upscale(baseModel, ExpansionSpec.Preserve(), seed: 5);
        using var tokens = Tiny.Tokens(ThreeLayers);
        using var trace = baseModel.Trace(tokens, 2);   // no logits: Preserve takes the head from the trace too
        Assert.Throws<ArgumentException>(() => model.ForwardForTraining(tokens, trace));
        Assert.Equal(0, Decoder.Create(ThreeLayers, seed: 3).TraceDepth);   // the base and the other methods compute their own pass
        TrialModels.ReleaseOwnTensors(model, baseModel);
    }

    /// <summary>
    /// Five trials on one runner at once: two Preserve (one resuming at step 5, so the other catches up with it), two Adapt
    /// with W12 in the top block only (another group: they take one block from the trace) and full fine-tuning (no group).
    /// Each ends bit for bit as it does alone: losses, scores, final weights and optimiser state.
    /// </summary>
    [Fact]
    public void Trials_in_lock_step_groups_end_bit_for_bit_as_each_does_alone_and_share_the_bases_forward()
    {
        using var dir = new TempDirectory();
        using var task = new TinyBioTask();
        var runner = task.Runner;
        var phase = new PhaseSpec { Steps = 12, Batch = 4, SequenceLength = 32, WarmupSteps = 2 };
        var experiment = new ExperimentSpec { Model = task.Base.Config, Continual = phase };
        TrialPlan Plan(string method, params (string Key, string Value)[] settings)
            => TrialPlanner.Plan(experiment, method, settings.ToDictionary(s => s.Key, s => s.Value), checkpointEvery: 5) with { Seed = 9 };
        var plans = new Dictionary<string, TrialPlan>
        {
            ["preserve-a"] = Plan("preserve", ("lr", "6e-3")),
            ["preserve-b"] = Plan("preserve", ("lr", "2e-3"), ("heads_up", "1")),
            ["adapt-a"] = Plan("adapt", ("w12_last", "1")),
            ["adapt-b"] = Plan("adapt", ("w12_last", "1"), ("lr", "1e-2")),
            ["full"] = Plan("full"),
        };

        var alone = plans.ToDictionary(p => p.Key, p => Trained(runner, p.Value, dir.Combine("alone", p.Key), null, null));

        // preserve-b starts the group run from its step-5 checkpoint.
        using (var interrupt = new CancellationTokenSource())
            Assert.ThrowsAny<OperationCanceledException>(() => runner.Train(plans["preserve-b"], dir.Combine("grouped", "preserve-b"),
                onCheckpoint: (_, step) => { if (step == 5) interrupt.Cancel(); }, cancellation: interrupt.Token));
        var groups = new LockStepGroups();
        using var start = new Barrier(plans.Count);
        var running = plans.ToDictionary(p => p.Key, p => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            return Trained(runner, p.Value, dir.Combine("grouped", p.Key), p.Key == "preserve-b" ? dir.Combine("grouped", "preserve-b", TrialRunner.Latest) : null, groups);
        }, TaskCreationOptions.LongRunning));
        Assert.True(Task.WaitAll(running.Values.ToArray(), TimeSpan.FromMinutes(5)), "the grouped trials did not finish in 5 minutes");

        foreach (var (name, result) in running.Select(r => (r.Key, r.Value.Result)))
        {
            var expected = alone[name];
            Assert.Equal(name == "preserve-b" ? expected.Losses.Skip(5) : expected.Losses, result.Losses);
            Assert.Equal(Figures(expected.Scores), Figures(result.Scores));
            Assert.Equal(expected.Weights.Keys.Order(), result.Weights.Keys.Order());
            Assert.All(expected.Weights, w => Assert.True(Tiny.BitEqual(w.Value, result.Weights[w.Key]), $"{name}: {w.Key} differs"));
        }
        // Every step of a grouped trial took a trace (12 + 7 for Preserve, 12 + 12 for Adapt), and some were another's: how many
        // depends on who joined first (one that joins behind computes alone until it has caught up).
        Assert.Equal(12 + 7 + 12 + 12, groups.TracesComputed + groups.TracesShared);
        Assert.True(groups.TracesShared > 0, "no trace was shared");
        Assert.Equal(0, groups.GroupedMembers);   // every member left
    }

    [Fact]
    public void Trials_that_read_other_batches_do_not_share_and_a_cancelled_member_leaves_its_group()
    {
        using var dir = new TempDirectory();
        using var task = new TinyBioTask();
        var phase = new PhaseSpec { Steps = 10, Batch = 4, SequenceLength = 32, WarmupSteps = 2 };
        var plan = new TrialPlan(MethodSpec.Preset("preserve"), phase, Seed: 9, CheckpointEvery: 10);
        var groups = new LockStepGroups();
        using var stop = new CancellationTokenSource();
        Task<TrialTraining> Start(Func<TrialTraining> train) => Task.Factory.StartNew(train, TaskCreationOptions.LongRunning);
        var seeded = Start(() => task.Runner.Train(plan with { Seed = 10 }, dir.Combine("other-seed"), lockStep: groups));
        var cancelled = Start(() => task.Runner.Train(plan, dir.Combine("cancelled"), lockStep: groups,
            onStep: s => { if (s.Step == 3) stop.Cancel(); }, cancellation: stop.Token));
        var kept = Start(() => task.Runner.Train(plan, dir.Combine("kept"), lockStep: groups));

        Assert.True(Task.WaitAll([seeded, kept], TimeSpan.FromMinutes(5)), "a member waited for one that had left");
        Assert.ThrowsAny<OperationCanceledException>(() => cancelled.GetAwaiter().GetResult());
        Assert.Equal(10, kept.Result.Steps);
        Assert.True(groups.TracesShared <= 3, $"only the two trials of seed 9 share, and only until step 3: {groups.TracesShared} shared");
        Assert.Equal(10 + 10 + 3, groups.TracesComputed + groups.TracesShared);
        Assert.Equal(0, groups.GroupedMembers);
    }

    [Fact]
    public void The_group_bench_trains_the_same_bits_in_lock_step_on_member_threads_as_one_trial_after_another()
    {
        var settings = new Scale.Model.Bench.BenchSettings { Model = ThreeLayers, HeadsUp = 1, FfnUp = 6, Batch = 2, SequenceLength = 16, Steps = 3, WarmupSteps = 1 };

        var together = Scale.Model.Bench.ThroughputBench.RunGroup("preserve", settings, CPU, 3, lockStep: true);
        var apart = Scale.Model.Bench.ThroughputBench.RunGroup("preserve", settings, CPU, 3, lockStep: false);

        Assert.Equal(apart.FinalLoss, together.FinalLoss);
        Assert.Equal((3, true, 3), (together.Members, together.LockStep, together.Steps));
        Assert.Throws<ArgumentException>(() => Scale.Model.Bench.ThroughputBench.RunGroup("adapt", settings, CPU, 2, lockStep: true));   // W12 from block 0: nothing to share
    }

    private static string Figures(TrialScores s)
        => $"{s.Scores.Retention:R} {s.Scores.Acquisition:R} {s.Scores.Forgetting:R} {s.Scores.RetentionFirstToken:R} {s.Scores.AcquisitionFirstToken:R} "
           + string.Join(",", s.RetentionByAttribute!.Concat(s.AcquisitionByAttribute!).Select(a => $"{a.Key}={a.Value:R}"));

    private sealed record Run(IReadOnlyList<double> Losses, TrialScores Scores, IReadOnlyDictionary<string, Tensor> Weights);

    private static Run Trained(TrialRunner runner, TrialPlan plan, string directory, string? resume, LockStepGroups? groups)
    {
        var losses = new List<double>();
        var trained = runner.Train(plan, directory, resume, onStep: s => losses.Add(s.Loss), lockStep: groups);
        var scores = runner.Evaluate(plan, trained.FinalCheckpoint);
        var weights = SafetensorsFile.Load(Path.Combine(trained.FinalCheckpoint!, "trainable.safetensors"))
            .Concat(SafetensorsFile.Load(Path.Combine(trained.FinalCheckpoint!, "optimizer.safetensors")))
            .Where(p => p.Key != "rng.cpu")   // the process's generator, which every trial in the process draws from: not the trial's own state
            .ToDictionary(p => p.Key, p => p.Value);
        return new Run(losses, scores, weights);
    }
}
