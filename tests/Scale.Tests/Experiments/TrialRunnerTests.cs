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
    [InlineData("route", false, false)]
    [InlineData("full", false, false)]
    [InlineData("preserve", true, false)]
    [InlineData("adapt", false, true)]
    [InlineData("full", false, true)]
    public void A_trial_interrupted_after_a_checkpoint_and_resumed_ends_bit_for_bit_like_an_uninterrupted_one(string method, bool corruptLatest, bool bf16)
    {
        if (bf16 && !Scale.Model.Native.CpuFeatures.Bf16)
        {
            // A CPU without bf16 units refuses mixed precision (these machines' EPYC has them: the rest of the test runs there).
            Assert.Throws<ArgumentException>(() => Scale.Model.Devices.ParsePrecision("bf16", ["cpu"]));
            return;
        }
        using var dir = new TempDirectory();
        using var task = new TinyBioTask();
        var runner = bf16 ? task.Runner.On(TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.BFloat16) : task.Runner;
        var plan = new TrialPlan(MethodSpec.Preset(method), new PhaseSpec { Steps = 12, Batch = 4, SequenceLength = 32, WarmupSteps = 2 },
                                 Seed: 9, CheckpointEvery: 5);
        var straightLosses = new List<double>();
        var straight = runner.Run(plan, dir.Combine("straight"), onStep: s => straightLosses.Add(s.Loss));

        using var interrupt = new CancellationTokenSource();
        string? checkpoint = null;
        Assert.ThrowsAny<OperationCanceledException>(() => runner.Run(plan, dir.Combine("interrupted"),
            onCheckpoint: (path, step) => { if (step == 10) { checkpoint = path; interrupt.Cancel(); } },
            cancellation: interrupt.Token));
        if (corruptLatest)
        {
            var file = Path.Combine(checkpoint!, "trainable.safetensors");
            File.WriteAllBytes(file, File.ReadAllBytes(file)[..64]);
        }
        var resumedLosses = new List<double>();
        var notices = new List<string>();
        var resumed = runner.Run(plan, dir.Combine("interrupted"), resumeFrom: checkpoint, onStep: s => resumedLosses.Add(s.Loss),
                                 onNotice: notices.Add);

        Assert.NotNull(checkpoint);
        Assert.Equal(straightLosses.Skip(corruptLatest ? 5 : 10), resumedLosses);   // a damaged latest falls back to the previous one (step 5)
        Assert.Equal(corruptLatest ? 1 : 0, notices.Count);
        Assert.Equal(straight, resumed with { TokensPerSecond = straight.TokensPerSecond });
    }

    /// <summary>
    /// A drain (the process told to stop) between two periodic checkpoints writes one at the step it stops at; resumed
    /// from it, the trial ends bit for bit as an uninterrupted one, with none of its steps trained again.
    /// </summary>
    [Theory]
    [InlineData("preserve")]
    [InlineData("full")]
    public void A_trial_drained_between_checkpoints_checkpoints_where_it_stops_and_resumes_bit_for_bit(string method)
    {
        using var dir = new TempDirectory();
        using var task = new TinyBioTask();
        var plan = new TrialPlan(MethodSpec.Preset(method), new PhaseSpec { Steps = 12, Batch = 4, SequenceLength = 32, WarmupSteps = 2 },
                                 Seed: 9, CheckpointEvery: 5);
        var straightLosses = new List<double>();
        var straight = task.Runner.Run(plan, dir.Combine("straight"), onStep: s => straightLosses.Add(s.Loss));

        using var drain = new CancellationTokenSource();
        var checkpoints = new List<(string Path, long Step)>();
        Assert.ThrowsAny<OperationCanceledException>(() => task.Runner.Train(plan, dir.Combine("drained"),
            onStep: s => { if (s.Step == 7) drain.Cancel(); },
            onCheckpoint: (path, step) => checkpoints.Add((path, step)), checkpointThenStop: drain.Token));
        Assert.Equal([5L, 7L], checkpoints.Select(c => c.Step));   // the periodic one, then the drain's at the step it stopped at

        var resumedLosses = new List<double>();
        var resumed = task.Runner.Run(plan, dir.Combine("drained"), resumeFrom: checkpoints[^1].Path, onStep: s => resumedLosses.Add(s.Loss));
        Assert.Equal(straightLosses.Skip(7), resumedLosses);
        Assert.Equal(straight, resumed with { TokensPerSecond = straight.TokensPerSecond });

        // Drained right at a periodic checkpoint: nothing more to write, it just stops.
        using var atCheckpoint = new CancellationTokenSource();
        var written = new List<long>();
        Assert.ThrowsAny<OperationCanceledException>(() => task.Runner.Train(plan, dir.Combine("at-checkpoint"),
            onStep: s => { if (s.Step == 5) atCheckpoint.Cancel(); }, onCheckpoint: (_, step) => written.Add(step), checkpointThenStop: atCheckpoint.Token));
        Assert.Equal([5L], written);
    }
}

public class KernelPathRecordTests
{
    [Fact]
    public void A_checkpoint_records_its_kernel_path_and_a_resume_on_another_path_says_it_is_not_bit_identical()
    {
        using var dir = new TempDirectory();
        using var task = new TinyBioTask();
        var plan = new TrialPlan(MethodSpec.Preset("preserve"), new PhaseSpec { Steps = 6, Batch = 4, SequenceLength = 32, WarmupSteps = 1 },
                                 Seed: 3, CheckpointEvery: 3);
        string? checkpoint = null;
        using var interrupt = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() => task.Runner.Run(plan, dir.Combine("trial"),
            onCheckpoint: (path, _) => { checkpoint = path; interrupt.Cancel(); }, cancellation: interrupt.Token));
        var statePath = Path.Combine(checkpoint!, Scale.Model.Checkpoints.TrialCheckpoint.StateFile);
        Assert.Equal(Scale.Model.Native.MklKernels.Current.Id, Scale.Model.Checkpoints.TrialCheckpoint.ReadState(checkpoint!).Kernels);

        File.WriteAllText(statePath, File.ReadAllText(statePath).Replace($"\"{Scale.Model.Native.MklKernels.Current.Id}\"", "\"mkl-type-3\""));
        var notices = new List<string>();
        task.Runner.Run(plan, dir.Combine("trial"), resumeFrom: checkpoint, onNotice: notices.Add);

        Assert.Contains(notices, n => n.Contains("written on mkl-type-3", StringComparison.Ordinal) && n.Contains("not bit-identical", StringComparison.Ordinal));
    }
}
