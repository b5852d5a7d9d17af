using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

public class DecoderTests
{
    [Theory]
    [InlineData(8, 3, null, "num_attention_heads")]
    [InlineData(8, 2, 3, "num_key_value_heads")]
    [InlineData(8, 0, null, "num_attention_heads")]
    public void Bad_head_counts_are_rejected_naming_the_field(int width, int heads, int? kvHeads, string field)
    {
        var config = Tiny.Mha with { HiddenSize = width, NumHeads = heads, NumKvHeadsOrNull = kvHeads };

        var error = Assert.Throws<InvalidModelConfigException>(() => config.Validate());

        Assert.Equal(field, error.Field);
        Assert.Contains(field, error.Message);
    }

    [Fact]
    public void Zero_layers_is_rejected()
    {
        var error = Assert.Throws<InvalidModelConfigException>(() => Decoder.Create(Tiny.Mha with { NumLayers = 0 }));
        Assert.Equal("num_hidden_layers", error.Field);
    }

    [Fact]
    public void Explicit_head_dim_may_differ_from_width_over_heads()
    {
        var config = Tiny.Mha with { HiddenSize = 12, NumHeads = 4, HeadDimOrNull = 6 };
        using var model = Decoder.Create(config);

        using var logits = model.forward(Tiny.Tokens(config));

        Assert.Equal(new long[] { 2, 7, config.VocabSize }, logits.shape);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Logits_have_batch_time_vocab_shape_and_are_causal(bool gqa)
    {
        var config = gqa ? Tiny.Gqa : Tiny.Mha;
        using var model = Decoder.Create(config, seed: 3);
        var tokens = Tiny.Tokens(config);
        var changedLast = tokens.clone();
        changedLast[.., -1] = (tokens[.., -1] + 1) % config.VocabSize;

        using var logits = model.forward(tokens);
        using var changed = model.forward(changedLast);

        Assert.Equal(new long[] { 2, 7, config.VocabSize }, logits.shape);
        Assert.True(Tiny.MaxAbsDiff(logits[.., ..6], changed[.., ..6]) < 1e-6, "earlier positions must not see a later token");
        Assert.True(Tiny.MaxAbsDiff(logits[.., 6], changed[.., 6]) > 1e-6);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Greedy_generation_with_cache_matches_recomputing_the_whole_sequence(bool gqa)
    {
        var config = gqa ? Tiny.Gqa : Tiny.Mha;
        using var model = Decoder.Create(config, seed: 5);
        long[] prompt = [3, 1, 4, 1, 5];

        var cached = Generation.Greedy(model, prompt, maxNewTokens: 6);

        var sequence = prompt.ToList();
        using (no_grad())
        {
            for (int i = 0; i < 6; i++)
            {
                using var logits = model.forward(tensor(sequence.ToArray()).unsqueeze(0));
                sequence.Add(logits[0, -1].argmax().item<long>());
            }
        }
        Assert.Equal(sequence.Skip(prompt.Length).ToArray(), cached);
    }

    [Fact]
    public void Generation_rejects_tokens_outside_the_vocabulary()
    {
        using var model = Decoder.Create(Tiny.Mha);
        var error = Assert.Throws<ArgumentException>(() => Generation.Greedy(model, [1, 99], 3));
        Assert.Contains("99", error.Message);
    }

    [Fact]
    public void Same_seed_gives_the_same_model_and_another_seed_a_different_one()
    {
        using var a = Decoder.Create(Tiny.Mha, seed: 11);
        using var b = Decoder.Create(Tiny.Mha, seed: 11);
        using var c = Decoder.Create(Tiny.Mha, seed: 12);
        var tokens = Tiny.Tokens(Tiny.Mha);

        Assert.True(Tiny.BitEqual(a.forward(tokens), b.forward(tokens)));
        Assert.False(Tiny.BitEqual(a.forward(tokens), c.forward(tokens)));
    }
}
