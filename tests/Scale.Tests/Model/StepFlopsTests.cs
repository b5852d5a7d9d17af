using Scale.Model;
using Scale.Model.Bench;

namespace Scale.Tests.Model;

public class StepFlopsTests
{
    private static readonly BenchSettings Bench = new();

    [Fact]
    public void Full_fine_tuning_costs_its_forward_three_times_and_its_forward_is_two_flops_per_weight_and_token_plus_attention()
    {
        var full = StepFlops.PerToken("full", Bench);
        var m = Bench.Model;
        double weights = MethodSpec.Preset("full").Build(Scale.Model.Transformer.Decoder.Create(m)).ParameterCount()
                         - (double)m.VocabSize * m.HiddenSize - m.HiddenSize * (2 * m.NumLayers + 1);   // the embedding is a lookup; norm gains are no products
        double attention = 4.0 * Bench.SequenceLength * m.HiddenSize * m.NumLayers;

        Assert.Equal(2 * weights + attention, full.Forward, 6);
        Assert.Equal(2 * full.Forward, full.Backward, 6);
    }

    [Fact]
    public void Preserve_skips_the_bases_backward_and_a_lock_step_member_also_its_forward()
    {
        var preserve = StepFlops.PerToken("preserve", Bench);
        var member = StepFlops.PerToken("preserve", Bench, baseForwardShared: true);
        var adapt = StepFlops.PerToken("adapt", Bench);
        var full = StepFlops.PerToken("full", Bench);

        Assert.Equal(preserve.Total - StepFlops.BaseForward(Bench).Total, member.Total, 6);
        Assert.True(preserve.Total < 0.7 * full.Total, $"preserve {preserve.Total:N0} against full {full.Total:N0}");
        Assert.True(adapt.Total > preserve.Total + StepFlops.BaseForward(Bench).Total, "Adapt's W12 puts the base's products on the backward path");
    }
}
