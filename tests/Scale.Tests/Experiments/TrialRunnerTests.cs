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
