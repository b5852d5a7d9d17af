using System.Text.Json.Nodes;
using Scale.Model.Checkpoints;
using Scale.Model.Transformer;
using TorchSharp;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

public class HfCheckpointTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>Llama 3.1's rope_scaling: (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings).</summary>
    private sealed record Llama3Scaling(double Factor, double Low, double High, int Original);

    private sealed record HfModel(string Architecture, int Vocab, int Hidden, int Layers, int Heads, int KvHeads, int Ffn,
                                  bool Tied, bool QkvBias, double Theta = 10000.0, double Eps = 1e-6)
    {
        public int HeadDim => Hidden / Heads;
        public Llama3Scaling? Scaling { get; init; }
        public int? SlidingWindow { get; init; }
    }

    private static readonly HfModel LlamaGqa = new("LlamaForCausalLM", 40, 16, 2, 4, 2, 24, Tied: false, QkvBias: false, Theta: 500000.0);
    private static readonly HfModel Qwen2Tied = new("Qwen2ForCausalLM", 40, 16, 2, 4, 1, 20, Tied: true, QkvBias: true);
    private static readonly HfModel Mistral = new("MistralForCausalLM", 40, 16, 3, 2, 2, 24, Tied: false, QkvBias: false) { SlidingWindow = 16 };
    /// <summary>Llama 2: multi-head attention, θ 10000, ε 1e-5, untied.</summary>
    private static readonly HfModel Llama2 = new("LlamaForCausalLM", 40, 16, 2, 2, 2, 24, Tied: false, QkvBias: false, Eps: 1e-5);
    /// <summary>
    /// Llama 3.2: tied embeddings, GQA, θ 500000 and llama3 rope scaling. Head size 8 gives four rotary pairs whose
    /// wavelengths (about 6, 167, 4,400 and 118,000 positions) fall on each side of and inside the band that the small
    /// original context of 256 sets (64 to 256), so every branch of the formula is exercised.
    /// </summary>
    private static readonly HfModel Llama32 = new("LlamaForCausalLM", 40, 16, 2, 2, 1, 24, Tied: true, QkvBias: false, Theta: 500000.0, Eps: 1e-5)
    {
        Scaling = new(32, 1, 4, 256),
    };

    /// <summary>Raw tensors under HF's names, as an HF model of this shape would hold them.</summary>
    private static Dictionary<string, Tensor> RawTensors(HfModel m, long seed)
    {
        var g = new Generator((ulong)seed);
        Tensor R(params long[] shape) => randn(shape, generator: g) * 0.2;
        long hd = m.HeadDim;
        var t = new Dictionary<string, Tensor> { ["model.embed_tokens.weight"] = R(m.Vocab, m.Hidden) };
        for (int i = 0; i < m.Layers; i++)
        {
            var at = $"model.layers.{i}";
            t[$"{at}.input_layernorm.weight"] = 1 + R(m.Hidden);
            t[$"{at}.self_attn.q_proj.weight"] = R(m.Heads * hd, m.Hidden);
            t[$"{at}.self_attn.k_proj.weight"] = R(m.KvHeads * hd, m.Hidden);
            t[$"{at}.self_attn.v_proj.weight"] = R(m.KvHeads * hd, m.Hidden);
            if (m.QkvBias)
            {
                t[$"{at}.self_attn.q_proj.bias"] = R(m.Heads * hd);
                t[$"{at}.self_attn.k_proj.bias"] = R(m.KvHeads * hd);
                t[$"{at}.self_attn.v_proj.bias"] = R(m.KvHeads * hd);
            }
            t[$"{at}.self_attn.o_proj.weight"] = R(m.Hidden, m.Heads * hd);
            t[$"{at}.post_attention_layernorm.weight"] = 1 + R(m.Hidden);
            t[$"{at}.mlp.gate_proj.weight"] = R(m.Ffn, m.Hidden);
            t[$"{at}.mlp.up_proj.weight"] = R(m.Ffn, m.Hidden);
            t[$"{at}.mlp.down_proj.weight"] = R(m.Hidden, m.Ffn);
        }
        t["model.norm.weight"] = 1 + R(m.Hidden);
        if (!m.Tied) t["lm_head.weight"] = R(m.Vocab, m.Hidden);
        return t;
    }

    private static void WriteConfig(HfModel m, string directory, Action<JsonObject>? edit = null)
    {
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray(m.Architecture),
            ["model_type"] = m.Architecture.Replace("ForCausalLM", "").ToLowerInvariant(),
            ["hidden_act"] = "silu",
            ["vocab_size"] = m.Vocab, ["hidden_size"] = m.Hidden, ["intermediate_size"] = m.Ffn,
            ["num_hidden_layers"] = m.Layers, ["num_attention_heads"] = m.Heads, ["num_key_value_heads"] = m.KvHeads,
            ["rope_theta"] = m.Theta, ["rms_norm_eps"] = m.Eps, ["tie_word_embeddings"] = m.Tied,
            ["max_position_embeddings"] = 64, ["torch_dtype"] = "float32",
        };
        if (m.Scaling is { } sc)
            json["rope_scaling"] = new JsonObject
            {
                ["factor"] = sc.Factor, ["low_freq_factor"] = sc.Low, ["high_freq_factor"] = sc.High,
                ["original_max_position_embeddings"] = sc.Original, ["rope_type"] = "llama3",
            };
        if (m.Architecture == "MistralForCausalLM") json["sliding_window"] = m.SlidingWindow is { } window ? window : null;
        edit?.Invoke(json);
        File.WriteAllText(Path.Combine(directory, "config.json"), json.ToJsonString());
    }

    private static void WriteCheckpoint(HfModel m, Dictionary<string, Tensor> tensors, string directory, bool sharded)
    {
        WriteConfig(m, directory);
        if (!sharded)
        {
            SafetensorsFile.Save(Path.Combine(directory, "model.safetensors"), tensors);
            return;
        }
        var names = tensors.Keys.Order().ToList();
        var shards = new[] { names.Take(names.Count / 2).ToList(), names.Skip(names.Count / 2).ToList() };
        var map = new JsonObject();
        for (int s = 0; s < 2; s++)
        {
            var file = $"model-0000{s + 1}-of-00002.safetensors";
            SafetensorsFile.Save(Path.Combine(directory, file), shards[s].ToDictionary(n => n, n => tensors[n]));
            foreach (var n in shards[s]) map[n] = file;
        }
        File.WriteAllText(Path.Combine(directory, "model.safetensors.index.json"),
            new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
    }

    /// <summary>HF's Llama forward written out from the raw tensors: rotate-half rotary, explicit softmax, repeated KV heads.</summary>
    private static Tensor ReferenceLogits(HfModel m, Dictionary<string, Tensor> w, Tensor tokens)
    {
        long b = tokens.shape[0], t = tokens.shape[1], hd = m.HeadDim;
        Tensor Rms(Tensor x, Tensor g) => x / (x.square().mean([-1L], keepdim: true) + m.Eps).sqrt() * g;
        Tensor Lin(Tensor x, string name) => matmul(x, w[name + ".weight"].t()) + (w.TryGetValue(name + ".bias", out var bias) ? bias : 0);
        var invFreq = 1.0 / pow(m.Theta, arange(0, hd, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / hd);
        if (m.Scaling is { } sc)
        {
            // Llama 3.1's frequency rule, as tensors: long wavelengths divided by the factor, short ones kept, a blend between.
            var wavelength = 2 * Math.PI / invFreq;
            var lowered = where(wavelength > sc.Original / sc.Low, invFreq / sc.Factor, invFreq);
            var smooth = (sc.Original / wavelength - sc.Low) / (sc.High - sc.Low);
            var blended = (1 - smooth) * lowered / sc.Factor + smooth * lowered;
            var band = wavelength.ge(sc.Original / sc.High).logical_and(wavelength.le(sc.Original / sc.Low));
            invFreq = where(band, blended, lowered);
        }
        var freqs = outer(arange(t, dtype: ScalarType.Float32), invFreq);
        var emb = cat([freqs, freqs], -1);
        var (cos, sin) = (emb.cos(), emb.sin());
        Tensor RotateHalf(Tensor x) => cat([-x[TensorIndex.Ellipsis, TensorIndex.Slice(hd / 2)], x[TensorIndex.Ellipsis, TensorIndex.Slice(0, hd / 2)]], -1);
        Tensor Heads(Tensor x, int n) => x.view(b, t, n, hd).permute(0, 2, 1, 3);
        var causal = ones(t, t).triu(1).to(ScalarType.Bool);

        var x = w["model.embed_tokens.weight"][tokens];
        for (int i = 0; i < m.Layers; i++)
        {
            var at = $"model.layers.{i}";
            var h = Rms(x, w[$"{at}.input_layernorm.weight"]);
            var q = Heads(Lin(h, $"{at}.self_attn.q_proj"), m.Heads);
            var k = Heads(Lin(h, $"{at}.self_attn.k_proj"), m.KvHeads);
            var v = Heads(Lin(h, $"{at}.self_attn.v_proj"), m.KvHeads);
            q = q * cos + RotateHalf(q) * sin;
            k = k * cos + RotateHalf(k) * sin;
            var kvIndex = tensor(Enumerable.Range(0, m.Heads).Select(head => (long)(head / (m.Heads / m.KvHeads))).ToArray());
            k = k.index_select(1, kvIndex);
            v = v.index_select(1, kvIndex);
            var scores = matmul(q, k.transpose(-1, -2)) / Math.Sqrt(hd);
            var probabilities = scores.masked_fill(causal, double.NegativeInfinity).exp();
            probabilities = probabilities / probabilities.sum([-1L], keepdim: true);
            var attended = matmul(probabilities, v).permute(0, 2, 1, 3).reshape(b, t, m.Heads * hd);
            x = x + Lin(attended, $"{at}.self_attn.o_proj");
            h = Rms(x, w[$"{at}.post_attention_layernorm.weight"]);
            var gate = Lin(h, $"{at}.mlp.gate_proj");
            x = x + Lin(gate * gate.sigmoid() * Lin(h, $"{at}.mlp.up_proj"), $"{at}.mlp.down_proj");
        }
        var head = m.Tied ? w["model.embed_tokens.weight"] : w["lm_head.weight"];
        return matmul(Rms(x, w["model.norm.weight"]), head.t());
    }

    public static TheoryData<string, bool> Layouts => new()
    {
        { "llama", false }, { "qwen2", true }, { "mistral", false }, { "llama2", false }, { "llama3.2", true }, { "llama3.2", false },
    };

    private static HfModel ByName(string name) => name switch
    {
        "llama" => LlamaGqa, "qwen2" => Qwen2Tied, "llama2" => Llama2, "llama3.2" => Llama32, _ => Mistral,
    };

    [Fact]
    public void Llama3_rope_scaling_changes_the_logits_and_round_trips_through_export()
    {
        using var dir = new TempDirectory();
        using var again = new TempDirectory();
        var raw = RawTensors(Llama32, seed: 8);
        WriteCheckpoint(Llama32, raw, dir.Path, sharded: false);
        var tokens = randint(0, Llama32.Vocab, [1, 40], generator: new Generator(3));

        using var model = HfCheckpoint.Load(dir.Path);
        HfCheckpoint.Save(model, again.Path);
        using var reloaded = HfCheckpoint.Load(again.Path);

        Assert.Equal(model.Config.RopeScaling, reloaded.Config.RopeScaling);
        Assert.Equal(HfCheckpoint.WriteConfig(model.Config), HfCheckpoint.WriteConfig(reloaded.Config));
        Assert.True(Tiny.BitEqual(model.forward(tokens), reloaded.forward(tokens)));
        // Without the scaling the same weights give other logits: the scaling is applied, not ignored.
        Assert.True(Tiny.MaxAbsDiff(model.forward(tokens), ReferenceLogits(Llama32 with { Scaling = null }, raw, tokens)) > 1e-3);
        Assert.True(Tiny.MaxAbsDiff(model.forward(tokens), ReferenceLogits(Llama32, raw, tokens)) <= 1e-4);
    }

    [Fact]
    public void A_sequence_longer_than_mistrals_sliding_window_is_refused_saying_why()
    {
        using var dir = new TempDirectory();
        var narrow = Mistral with { SlidingWindow = 8 };
        WriteCheckpoint(narrow, RawTensors(narrow, seed: 2), dir.Path, sharded: false);
        using var model = HfCheckpoint.Load(dir.Path);

        var within = model.forward(randint(0, narrow.Vocab, [1, 8], generator: new Generator(1)));
        var error = Assert.Throws<ArgumentException>(() => model.forward(randint(0, narrow.Vocab, [1, 9], generator: new Generator(1))));

        Assert.Equal([1L, 8, narrow.Vocab], within.shape);
        Assert.Contains("sliding attention window of 8", error.Message);
        Assert.Contains("MistralForCausalLM", HfCheckpoint.WriteConfig(model.Config));
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void Imported_checkpoint_reproduces_logits_computed_from_the_raw_tensors(string layout, bool sharded)
    {
        var m = ByName(layout);
        using var dir = new TempDirectory();
        var raw = RawTensors(m, seed: 21);
        WriteCheckpoint(m, raw, dir.Path, sharded);
        var tokens = randint(0, m.Vocab, [2, 11], generator: new Generator(5));

        using var model = HfCheckpoint.Load(dir.Path);
        using var logits = model.forward(tokens);
        using var expected = ReferenceLogits(m, raw, tokens);

        double difference = Tiny.MaxAbsDiff(logits, expected);
        output.WriteLine($"{layout}{(sharded ? " (sharded)" : "")}: largest logit difference from the raw-tensor reference {difference:E2}");
        Assert.True(difference <= 1e-4, $"max abs diff {difference}");
    }

    [Fact]
    public void Half_precision_checkpoints_are_widened_to_float32()
    {
        using var dir = new TempDirectory();
        var raw = RawTensors(LlamaGqa, seed: 3).ToDictionary(t => t.Key, t => t.Value.to(ScalarType.BFloat16));
        WriteCheckpoint(LlamaGqa, raw, dir.Path, sharded: false);

        using var model = HfCheckpoint.Load(dir.Path);

        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        var tokens = randint(0, LlamaGqa.Vocab, [1, 6], generator: new Generator(2));
        var widened = raw.ToDictionary(t => t.Key, t => t.Value.to(ScalarType.Float32));
        Assert.True(Tiny.MaxAbsDiff(model.forward(tokens), ReferenceLogits(LlamaGqa, widened, tokens)) <= 1e-4);
    }

    [Fact]
    public void Export_then_import_round_trips_bit_for_bit_with_HF_names()
    {
        using var dir = new TempDirectory();
        using var model = Decoder.Create(Tiny.Gqa, seed: 9);

        HfCheckpoint.Save(model, dir.Path);
        using var loaded = HfCheckpoint.Load(dir.Path);

        var names = SafetensorsFile.ReadHeader(dir.Combine("model.safetensors")).Keys.ToHashSet();
        Assert.Contains("model.layers.1.self_attn.k_proj.weight", names);
        Assert.Contains("lm_head.weight", names);
        var reloaded = loaded.DistinctParameters().ToDictionary(p => p.Name, p => p.Parameter);
        foreach (var (name, p) in model.DistinctParameters()) Assert.True(Tiny.BitEqual(p, reloaded[name]), name);
        Assert.Equal(HfCheckpoint.WriteConfig(model.Config), HfCheckpoint.WriteConfig(loaded.Config));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.partial"));
    }

    [Fact]
    public void A_qwen2_checkpoint_exports_as_qwen2_with_its_biases()
    {
        using var dir = new TempDirectory();
        using var again = new TempDirectory();
        WriteCheckpoint(Qwen2Tied, RawTensors(Qwen2Tied, 4), dir.Path, sharded: false);

        HfCheckpoint.Save(HfCheckpoint.Load(dir.Path), again.Path);

        Assert.Contains("Qwen2ForCausalLM", File.ReadAllText(again.Combine("config.json")));
        Assert.Contains("model.layers.0.self_attn.q_proj.bias", SafetensorsFile.ReadHeader(again.Combine("model.safetensors")).Keys);
        Assert.DoesNotContain("lm_head.weight", SafetensorsFile.ReadHeader(again.Combine("model.safetensors")).Keys);
    }

    [Theory]
    [InlineData("missing", "missing tensors: layers.1.mlp.up_proj.weight")]
    [InlineData("extra", "unexpected tensors: layers.0.self_attn.o_proj.bias")]
    [InlineData("misshaped", "mis-shaped tensors: norm.weight is [15], expected [16]")]
    public void Checkpoints_with_missing_extra_or_misshaped_tensors_are_rejected_by_name(string fault, string message)
    {
        using var dir = new TempDirectory();
        var raw = RawTensors(LlamaGqa, seed: 1);
        switch (fault)
        {
            case "missing": raw.Remove("model.layers.1.mlp.up_proj.weight"); break;
            case "extra": raw["model.layers.0.self_attn.o_proj.bias"] = zeros(16); break;
            default: raw["model.norm.weight"] = ones(15); break;
        }
        WriteCheckpoint(LlamaGqa, raw, dir.Path, sharded: false);

        var error = Assert.Throws<InvalidCheckpointException>(() => HfCheckpoint.Load(dir.Path));

        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void A_truncated_safetensors_file_is_reported_as_truncated()
    {
        using var dir = new TempDirectory();
        WriteCheckpoint(LlamaGqa, RawTensors(LlamaGqa, 1), dir.Path, sharded: false);
        var weights = dir.Combine("model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, bytes[..(bytes.Length - 100)]);

        var error = Assert.Throws<InvalidCheckpointException>(() => HfCheckpoint.Load(dir.Path));

        Assert.Contains("truncated", error.Message);
        Assert.Contains("model.safetensors", error.Message);
    }

    [Fact]
    public void A_safetensors_header_longer_than_the_formats_limit_is_refused_before_it_is_read()
    {
        using var dir = new TempDirectory();
        var weights = dir.Combine("model.safetensors");
        using (var stream = File.Create(weights))
        {
            // A sparse file long enough to hold the header it claims, so that only the format's limit refuses it.
            stream.Write(BitConverter.GetBytes(SafetensorsFile.MaxHeaderBytes + 1));
            stream.SetLength(8 + SafetensorsFile.MaxHeaderBytes + 1);
        }

        var error = Assert.Throws<InvalidCheckpointException>(() => SafetensorsFile.ReadHeader(weights));

        Assert.Contains("more than the format's limit of 100,000,000", error.Message);
    }

    [Theory]
    [InlineData("architecture", "unsupported architecture 'GPT2LMHeadModel'")]
    [InlineData("rope_scaling", "rope_scaling of type 'yarn' is not supported")]
    [InlineData("rope_scaling_factor", "rope_scaling.factor is required")]
    [InlineData("partial_rotary", "partial_rotary_factor other than 1 is not supported")]
    [InlineData("activation", "hidden_act 'gelu'")]
    [InlineData("heads", "num_attention_heads")]
    public void Unsupported_or_inconsistent_configs_are_rejected_with_the_reason(string fault, string message)
    {
        using var dir = new TempDirectory();
        SafetensorsFile.Save(dir.Combine("model.safetensors"), RawTensors(LlamaGqa, 1));
        WriteConfig(LlamaGqa, dir.Path, json =>
        {
            switch (fault)
            {
                case "architecture": json["architectures"] = new JsonArray("GPT2LMHeadModel"); break;
                case "rope_scaling": json["rope_scaling"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = 8.0 }; break;
                case "rope_scaling_factor": json["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["original_max_position_embeddings"] = 64 }; break;
                case "partial_rotary": json["partial_rotary_factor"] = 0.5; break;
                case "activation": json["hidden_act"] = "gelu"; break;
                default: json["num_attention_heads"] = 3; break;
            }
        });

        var error = Assert.Throws<InvalidCheckpointException>(() => HfCheckpoint.Load(dir.Path));

        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void A_directory_without_weights_says_what_is_missing()
    {
        using var dir = new TempDirectory();
        WriteConfig(LlamaGqa, dir.Path);

        var error = Assert.Throws<InvalidCheckpointException>(() => HfCheckpoint.Load(dir.Path));

        Assert.Contains("model.safetensors", error.Message);
    }
}
