using Scale.Model;
using Scale.Model.Transformer;
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
}
