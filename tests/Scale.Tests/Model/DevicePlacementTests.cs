using Scale.Model;
using Scale.Model.Training;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using TorchSharp;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

/// <summary>
/// Trainers placed on devices, as far as a CPU-only machine can check it: the `--devices` list, the per-device copy of the
/// frozen base, and every method's tensors built where the base lives. CUDA itself cannot run here (no CUDA package is
/// served to these machines); the same code paths place tensors with `to(device)` there.
/// </summary>
public class DevicePlacementTests
{
    [Theory]
    [InlineData("cpu", new[] { "cpu" })]
    [InlineData("cpu, cpu:1,CPU:2", new[] { "cpu", "cpu:1", "cpu:2" })]
    public void A_devices_list_names_one_trainer_per_entry(string list, string[] expected)
        => Assert.Equal(expected, Devices.ParseList(list));

    [Theory]
    [InlineData("always [madvise] never\n", true, "arena_max=8:glibc.malloc.hugetlb=1")]
    [InlineData("[always] madvise never\n", true, "arena_max=8:glibc.malloc.hugetlb=1")]
    [InlineData("always madvise [never]\n", true, "arena_max=1")]
    [InlineData(null, true, "arena_max=1")]   // no such setting (not Linux, or a kernel without transparent huge pages)
    [InlineData("always [madvise] never\n", false, "arena_max=1")]   // fp32: one arena, whatever the pages
    [InlineData(null, false, "arena_max=1")]
    public void Malloc_gets_several_arenas_only_in_bf16_and_where_huge_pages_keep_large_tensors_from_faulting_page_by_page(
        string? setting, bool bf16, string arenas)
    {
        using var dir = new TempDirectory();
        var path = dir.Combine("enabled");
        if (setting is not null) File.WriteAllText(path, setting);

        var tunables = Devices.MallocTunablesFor(Devices.TransparentHugePages(path), reducedPrecision: bf16);

        Assert.EndsWith(arenas, tunables);
        Assert.StartsWith("glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=2147483647:", tunables);
    }

    [Theory]
    [InlineData("", "at least one device")]
    [InlineData("cpu,cpu", "names cpu twice")]
    [InlineData("cpu:0,cpu", "names cpu twice")]
    [InlineData("gpu", "Invalid device 'gpu'")]
    [InlineData("cpu:x", "Invalid device 'cpu:x'")]
    [InlineData("cuda", "CUDA is not available")]      // these machines' build uses the CPU libtorch
    [InlineData("cpu,cuda:1", "CUDA is not available")]
    public void A_bad_devices_list_is_refused_in_one_line_before_anything_starts(string list, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => Devices.ParseList(list));
        Assert.Contains(message, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void A_base_copied_for_a_device_computes_the_same_logits_from_tensors_of_its_own_and_stays_frozen()
    {
        using var original = Decoder.Create(Tiny.Gqa, seed: 3).Freeze();
        Assert.Same(original, original.On(CPU));   // already there: no copy

        using var copy = original.DeepClone(CPU).Freeze();
        using var tokens = Tiny.Tokens(Tiny.Gqa);
        Assert.True(Tiny.BitEqual(original.forward(tokens), copy.forward(tokens)));
        var handles = original.parameters().Select(p => p.Handle).ToHashSet();
        Assert.All(copy.parameters(), p => Assert.DoesNotContain(p.Handle, handles));
        Assert.All(copy.parameters(), p => Assert.False(p.requires_grad));
    }

    [Theory]
    [InlineData("full")]
    [InlineData("freeze")]
    [InlineData("depth")]
    [InlineData("lora")]
    [InlineData("preserve")]
    [InlineData("adapt")]
    [InlineData("route")]
    public void Every_method_builds_its_tensors_on_the_base_device_and_starts_from_the_same_bits_wherever_the_base_is(string method)
    {
        using var original = Decoder.Create(Tiny.Gqa, seed: 3).Freeze();
        using var copy = original.DeepClone(CPU).Freeze();
        var spec = MethodSpec.Preset(method);
        var (a, b) = (spec.Build(original, seed: 5), spec.Build(copy, seed: 5));
        try
        {
            Assert.All(a.parameters(), p => Assert.True(Ops.IsOn(p, original.Device)));
            var (left, right) = (a.named_parameters().ToList(), b.named_parameters().ToList());
            Assert.Equal(left.Select(p => p.name), right.Select(p => p.name));
            foreach (var ((name, x), (_, y)) in left.Zip(right)) Assert.True(Tiny.BitEqual(x, y), name);
        }
        finally
        {
            TrialModels.ReleaseOwnTensors(a, original);
            TrialModels.ReleaseOwnTensors(b, copy);
        }
    }

    [Fact]
    public void Placing_a_tensor_where_it_already_is_keeps_it_and_the_cpu_has_one_device_whatever_its_index()
    {
        using var t = ones(3);
        Assert.Same(t, Ops.Place(t, CPU));
        Assert.True(Ops.IsOn(t, new Device(DeviceType.CPU, 0)));
        Assert.Equal("cpu", Devices.Key(Devices.Parse("cpu:3")));
    }

    // bf16 autocast is for CUDA trainers; its arithmetic is the same on the CPU, which libtorch also computes in bf16,
    // so these tests check what autocast does to each method here. Its speed on a GPU cannot be measured here.

    [Theory]
    [InlineData("full")]
    [InlineData("lora")]
    [InlineData("depth")]
    [InlineData("adapt")]
    public void Under_bf16_autocast_logits_stay_fp32_close_to_full_precision_and_training_gives_fp32_gradients(string method)
    {
        using var baseModel = Decoder.Create(Tiny.Gqa, seed: 2).Freeze();
        var model = MethodSpec.Preset(method).Build(baseModel, seed: 4);
        try
        {
            Tiny.Randomise(model, baseModel, seed: 8);
            using var tokens = Tiny.Tokens(Tiny.Gqa, batch: 2, length: 8);
            using var full = model.forward(tokens);
            Tensor reduced;
            using (Autocast.Enter(ScalarType.BFloat16)) reduced = model.forward(tokens);
            Assert.Equal(ScalarType.Float32, reduced.dtype);
            Assert.False(Tiny.BitEqual(full, reduced), "autocast must change the arithmetic");
            Assert.True(Tiny.MaxAbsDiff(full, reduced) < 0.1, $"max abs diff {Tiny.MaxAbsDiff(full, reduced)}");

            using var session = new TrainingSession(model, new TrainingOptions { LearningRate = 1e-2, WarmupSteps = 1, TotalSteps = 3 });
            using (Autocast.Enter(ScalarType.BFloat16))
            {
                var first = session.TrainStep([Tiny.Tokens(Tiny.Gqa, batch: 4, length: 9, seed: 11)]);
                Assert.True(double.IsFinite(first.Loss) && double.IsFinite(first.GradientNorm) && first.GradientNorm > 0);
            }
            Assert.All(session.Trainable, p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
            Assert.Null(Autocast.Type);   // restored on leaving
        }
        finally
        {
            TrialModels.ReleaseOwnTensors(model, baseModel);
        }
    }

    [Fact]
    public void Under_bf16_autocast_Preserve_keeps_the_bf16_base_stream_and_Route_preserving_gives_its_logits_bit_for_bit()
    {
        using var baseModel = Decoder.Create(Tiny.Gqa, seed: 2).Freeze();
        var preserve = (ScaleDecoder)MethodSpec.Preset("preserve").Build(baseModel, seed: 4);
        var adapt = (ScaleDecoder)new MethodSpec { Kind = MethodKind.Adapt, Expansion = ExpansionSpec.Adapt(headsUp: 2, firstLayer: 1) }.Build(baseModel, seed: 4);
        try
        {
            Tiny.Randomise(preserve, baseModel, seed: 8);
            Tiny.Randomise(adapt, baseModel, seed: 8);
            adapt.Routing = new RoutingSpec(RouteRule.Cosine, -2);   // always the preservation head
            using var tokens = Tiny.Tokens(Tiny.Gqa, batch: 2, length: 8);
            using var cast = Autocast.Enter(ScalarType.BFloat16);
            using var baseLogits = baseModel.forward(tokens);
            var (baseStates, originalStream) = (baseModel.HiddenStates(tokens), preserve.OriginalStreamStates(tokens));
            for (int layer = 0; layer < baseStates.Count; layer++)
                Assert.True(Tiny.BitEqual(baseStates[layer], originalStream[layer]), $"Preserve's original stream differs from the bf16 base's after layer {layer}");
            Assert.True(Tiny.BitEqual(baseLogits, adapt.forward(tokens)), "the preservation head must be the base's bf16 logits");
        }
        finally
        {
            TrialModels.ReleaseOwnTensors(preserve, baseModel);
            TrialModels.ReleaseOwnTensors(adapt, baseModel);
        }
    }

    [Fact]
    public void A_runner_asked_for_bf16_trains_and_scores_its_trials_under_autocast_and_leaves_fp32_runs_as_they_were()
    {
        using var dir = new TempDirectory();
        using var task = new Scale.Tests.Experiments.TinyBioTask();
        var plan = new Scale.Model.Experiments.TrialPlan(MethodSpec.Preset("adapt"), new Scale.Model.Experiments.PhaseSpec { Steps = 6, Batch = 4, SequenceLength = 32, WarmupSteps = 1 },
                                                         Seed: 9, CheckpointEvery: 3);
        var bf16 = task.Runner.On(CPU, ScalarType.BFloat16);
        Assert.NotSame(task.Runner, bf16);
        // A resident base of its own, its matrices in bf16 (cast once, never per step), made once per device and precision.
        Assert.NotSame(task.Base, bf16.Base);
        Assert.Same(bf16.Base, task.Runner.On(CPU, ScalarType.BFloat16).Base);
        Assert.Equal(ScalarType.BFloat16, bf16.Base.StateTensors()["layers.0.mlp.up_proj.weight"].dtype);
        Assert.All(task.Base.StateTensors().Values, t => Assert.Equal(ScalarType.Float32, t.dtype));

        var full = task.Runner.Run(plan, dir.Combine("fp32"));
        var reduced = bf16.Run(plan, dir.Combine("bf16"));
        var again = task.Runner.Run(plan, dir.Combine("fp32-again"));

        Assert.NotEqual(full.FinalLoss, reduced.FinalLoss);
        Assert.True(Math.Abs(full.FinalLoss - reduced.FinalLoss) < 0.05 * full.FinalLoss, $"fp32 {full.FinalLoss}, bf16 {reduced.FinalLoss}");
        Assert.Equal(full.FinalLoss, again.FinalLoss);   // fp32 bit for bit, with a bf16 run in between
        Assert.Equal(full.Scores.Retention, again.Scores.Retention);
    }
}
