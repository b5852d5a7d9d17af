using Scale.Model;
using Scale.Model.Native;
using Scale.Model.Transformer;
using Scale.Model.Upscaling;
using Scale.Tests.Host;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

/// <summary>bf16 mixed precision on the CPU: the frozen base resident in bf16, the rest fp32, and a refusal where the CPU has no bf16 units.</summary>
public class MixedPrecisionTests
{
    [Fact]
    public void The_reduced_base_holds_its_matrices_in_bf16_and_a_trained_copy_of_it_is_fp32()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2).Freeze();
        using var reduced = baseModel.Reduced(ScalarType.BFloat16);

        var types = reduced.DistinctParameters().ToDictionary(p => p.Name, p => p.Parameter.dtype);
        Assert.Equal(ScalarType.BFloat16, types["embed_tokens.weight"]);
        Assert.Equal(ScalarType.BFloat16, types["layers.0.self_attn.q_proj.weight"]);
        Assert.Equal(ScalarType.Float32, types["layers.0.input_layernorm.weight"]);
        long full = baseModel.DistinctParameters().Sum(p => p.Parameter.numel() * 4);
        long half = reduced.DistinctParameters().Sum(p => p.Parameter.numel() * p.Parameter.ElementSize);
        Assert.True(half < full * 0.55, $"{half} bytes resident in bf16 against {full} in fp32");
        var copy = MethodSpec.Preset("full").Build(reduced);
        Assert.All(copy.TrainableParameters(), p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
    }

    [Fact]
    public void Under_bf16_Preserve_keeps_the_bf16_bases_stream_bit_for_bit()
    {
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2).Freeze();
        using var reduced = baseModel.Reduced(ScalarType.BFloat16);
        using var tokens = Tiny.Tokens(Tiny.Mha, batch: 2, length: 9);
        using var cast = Autocast.Enter(ScalarType.BFloat16);
        using var noGrad = no_grad();
        var preserve = ScaleDecoder.Upscale(reduced, ExpansionSpec.Preserve(), seed: 3);
        Tiny.Randomise(preserve, reduced);

        var expected = reduced.HiddenStates(tokens);
        var actual = preserve.OriginalStreamStates(tokens);

        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++) Assert.True(Tiny.BitEqual(expected[i], actual[i]), $"stream after block {i - 1}");
        Assert.True(Tiny.BitEqual(reduced.forward(tokens), MethodSpec.Route(preserve, reduced, new RoutingSpec(RouteRule.Cosine, -2)).forward(tokens)));
        TrialModels.ReleaseOwnTensors(preserve, reduced);
    }

    [Fact]
    public void A_CPU_without_bf16_units_gets_a_one_line_refusal_never_a_slow_emulation()
    {
        using var dir = new TempDirectory();
        var absent = new Dictionary<string, string> { [CpuFeatures.Bf16Variable] = "absent" };

        var bench = ScaleProcess.RunWith(absent, "bench", "--only", "preserve", "--steps", "1", "--precision", "bf16");
        var run = ScaleProcess.RunWith(absent, "run", "quickstart", "--precision", "bf16", "--data-dir", dir.Path, "--http", "off", "--plain");

        foreach (var refused in new[] { bench, run })
        {
            Assert.Equal(2, refused.ExitCode);
            var line = Assert.Single(refused.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains("needs a CPU with bf16 units", line);
        }
        Assert.False(File.Exists(Path.Combine(dir.Path, "sweeps.db")));   // refused before the journal
    }
}
