using System.Text.Json;
using System.Text.Json.Nodes;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Checkpoints;

/// <summary>
/// Hugging Face LLaMA-family checkpoints: config.json plus model.safetensors, or shards listed in
/// model.safetensors.index.json. Llama, Qwen2 and Mistral share the parameter names and the rotate-half
/// rotary layout Scale uses, so the mapping is a name table: HF's "model." prefix comes off on import and
/// goes back on export. A Scale base model is saved in exactly this format.
/// </summary>
internal static class HfCheckpoint
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    public static readonly IReadOnlyList<string> SupportedArchitectures = ["LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"];

    /// <summary>config.json's model_type → the architecture that family's checkpoints name.</summary>
    private static readonly IReadOnlyDictionary<string, string> SupportedModelTypes = new Dictionary<string, string>
    {
        ["llama"] = "LlamaForCausalLM", ["qwen2"] = "Qwen2ForCausalLM", ["mistral"] = "MistralForCausalLM",
    };

    /// <summary>HF tensor name → Scale name.</summary>
    public static string FromHfName(string name) => name.StartsWith("model.", StringComparison.Ordinal) ? name["model.".Length..] : name;

    /// <summary>Scale tensor name → HF name.</summary>
    public static string ToHfName(string name) => name.StartsWith("lm_head.", StringComparison.Ordinal) ? name : "model." + name;

    /// <summary>Loads a base model from a checkpoint directory; every tensor becomes float32 on the CPU.</summary>
    public static Decoder Load(string directory)
    {
        var config = ReadConfig(directory);
        var tensors = new Dictionary<string, Tensor>();
        foreach (var file in WeightFiles(directory))
            foreach (var (name, tensor) in SafetensorsFile.Load(file))
            {
                if (name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)) continue;   // a cache some exporters keep
                tensors[FromHfName(name)] = tensor;
            }
        return Decoder.FromTensors(config, tensors);
    }

    /// <summary>Writes config.json and model.safetensors; nothing is left half-written if it fails.</summary>
    public static void Save(Decoder model, string directory)
    {
        Directory.CreateDirectory(directory);
        var configPath = Path.Combine(directory, ConfigFile);
        var temp = configPath + ".partial";
        try
        {
            File.WriteAllText(temp, WriteConfig(model.Config));
            SafetensorsFile.Save(Path.Combine(directory, WeightsFile),
                model.StateTensors().ToDictionary(t => ToHfName(t.Key), t => t.Value));
            File.Move(temp, configPath, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Reads config.json, accepting only what Scale computes exactly as HF does.</summary>
    public static ModelConfig ReadConfig(string directory)
    {
        var path = Path.Combine(directory, ConfigFile);
        if (!Directory.Exists(directory)) throw new InvalidCheckpointException($"{directory}: no such model directory.");
        if (!File.Exists(path)) throw new InvalidCheckpointException($"{path}: missing; a model directory holds config.json and model.safetensors.");
        var json = ReadJsonObject(path);
        var architecture = (json["architectures"] as JsonArray)?.FirstOrDefault()?.GetValue<string>();
        if (architecture is null || !SupportedArchitectures.Contains(architecture))
            throw new InvalidCheckpointException(
                $"{path}: unsupported architecture '{architecture ?? "(none)"}'; Scale imports {string.Join(", ", SupportedArchitectures)}.");
        void Reject(bool unsupported, string reason)
        {
            if (unsupported) throw new InvalidCheckpointException($"{path}: {reason} is not supported.");
        }
        // model_type names the family Hugging Face builds; it must be one Scale computes, and agree with the architecture.
        var modelType = json["model_type"]?.GetValue<string>();
        if (modelType is not null && !SupportedModelTypes.TryGetValue(modelType, out _))
            throw new InvalidCheckpointException($"{path}: model_type '{modelType}' is not supported; Scale imports {string.Join(", ", SupportedModelTypes.Keys)}.");
        if (modelType is not null && SupportedModelTypes[modelType] != architecture)
            throw new InvalidCheckpointException($"{path}: model_type '{modelType}' does not match architecture '{architecture}' (expected {SupportedModelTypes[modelType]}).");
        var act = json["hidden_act"]?.GetValue<string>() ?? "silu";
        Reject(act != "silu", $"hidden_act '{act}' (only silu, SwiGLU)");
        Reject(json["partial_rotary_factor"] is JsonValue partial && partial.GetValue<double>() != 1.0, "partial_rotary_factor other than 1");
        Reject(json["mlp_bias"]?.GetValue<bool>() == true, "mlp_bias");
        bool qwen = architecture == "Qwen2ForCausalLM";
        Reject(!qwen && json["attention_bias"]?.GetValue<bool>() == true, "attention_bias on a Llama-layout model (o_proj bias)");
        int Required(string key) => json[key]?.GetValue<int>() ?? throw new InvalidCheckpointException($"{path}: required field {key} is missing.");
        try
        {
            return new ModelConfig
            {
                VocabSize = Required("vocab_size"),
                HiddenSize = Required("hidden_size"),
                NumLayers = Required("num_hidden_layers"),
                NumHeads = Required("num_attention_heads"),
                NumKvHeadsOrNull = json["num_key_value_heads"]?.GetValue<int>(),
                HeadDimOrNull = json["head_dim"]?.GetValue<int>(),
                IntermediateSize = Required("intermediate_size"),
                RopeTheta = json["rope_theta"]?.GetValue<double>() ?? 10000.0,
                RmsNormEps = json["rms_norm_eps"]?.GetValue<double>() ?? 1e-6,
                TieWordEmbeddings = json["tie_word_embeddings"]?.GetValue<bool>() ?? false,
                AttentionBias = qwen,
                MaxPositionEmbeddings = json["max_position_embeddings"]?.GetValue<int>() ?? 2048,
                RopeScaling = ReadRopeScaling(json["rope_scaling"], path),
                SlidingWindow = architecture switch
                {
                    "MistralForCausalLM" => json["sliding_window"]?.GetValue<int?>(),
                    "Qwen2ForCausalLM" when json["use_sliding_window"]?.GetValue<bool>() == true => json["sliding_window"]?.GetValue<int?>(),
                    _ => null,
                },
            }.Validate();
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new InvalidCheckpointException($"{path}: a field has the wrong type ({e.Message}).");
        }
        catch (InvalidModelConfigException e)
        {
            throw new InvalidCheckpointException($"{path}: {e.Message}");
        }
    }

    /// <summary>config.json's rope_scaling: null or type "default" for none, "llama3" or "linear"; any other type is refused by name.</summary>
    private static RopeScaling? ReadRopeScaling(JsonNode? node, string path)
    {
        if (node is null) return null;
        if (node is not JsonObject o) throw new InvalidCheckpointException($"{path}: rope_scaling must be an object or null.");
        var type = (o["rope_type"] ?? o["type"])?.GetValue<string>();
        if (type is null or "default") return null;
        if (type is not (RopeScaling.Llama3 or RopeScaling.Linear))
            throw new InvalidCheckpointException($"{path}: rope_scaling of type '{type}' is not supported (Scale computes llama3 and linear).");
        double Number(string key, double? fallback)
            => o[key]?.GetValue<double>() ?? fallback ?? throw new InvalidCheckpointException($"{path}: rope_scaling.{key} is required for type '{type}'.");
        var defaults = new RopeScaling();
        return type == RopeScaling.Linear
            ? new RopeScaling { RopeType = type, Factor = Number("factor", null) }
            : new RopeScaling
            {
                RopeType = type, Factor = Number("factor", null), LowFreqFactor = Number("low_freq_factor", defaults.LowFreqFactor),
                HighFreqFactor = Number("high_freq_factor", defaults.HighFreqFactor),
                OriginalMaxPositionEmbeddings = (int)Number("original_max_position_embeddings", null),
            };
    }

    /// <summary>A JSON file that must hold an object; anything else is an <see cref="InvalidCheckpointException"/> naming the file.</summary>
    internal static JsonObject ReadJsonObject(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new JsonException("not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidCheckpointException($"{path}: not valid JSON ({e.Message}).");
        }
    }

    public static string WriteConfig(ModelConfig config)
    {
        bool qwen = config.AttentionBias;
        var json = new JsonObject
        {
            // Mistral's layout is Llama's; only its sliding window tells them apart, so a model with one is written as Mistral.
            ["architectures"] = new JsonArray(qwen ? "Qwen2ForCausalLM" : config.SlidingWindow is null ? "LlamaForCausalLM" : "MistralForCausalLM"),
            ["model_type"] = qwen ? "qwen2" : config.SlidingWindow is null ? "llama" : "mistral",
            ["hidden_act"] = "silu",
            ["vocab_size"] = config.VocabSize,
            ["hidden_size"] = config.HiddenSize,
            ["intermediate_size"] = config.IntermediateSize,
            ["num_hidden_layers"] = config.NumLayers,
            ["num_attention_heads"] = config.NumHeads,
            ["num_key_value_heads"] = config.NumKvHeads,
            ["head_dim"] = config.HeadDim,
            ["rope_theta"] = config.RopeTheta,
            ["rms_norm_eps"] = config.RmsNormEps,
            ["tie_word_embeddings"] = config.TieWordEmbeddings,
            ["max_position_embeddings"] = config.MaxPositionEmbeddings,
            ["torch_dtype"] = "float32",
        };
        if (!qwen) json["attention_bias"] = false;
        if (config.RopeScaling is { } scaling)
            json["rope_scaling"] = scaling.RopeType == RopeScaling.Linear
                ? new JsonObject { ["rope_type"] = scaling.RopeType, ["factor"] = scaling.Factor }
                : new JsonObject
                {
                    ["rope_type"] = scaling.RopeType, ["factor"] = scaling.Factor, ["low_freq_factor"] = scaling.LowFreqFactor,
                    ["high_freq_factor"] = scaling.HighFreqFactor, ["original_max_position_embeddings"] = scaling.OriginalMaxPositionEmbeddings,
                };
        if (config.SlidingWindow is { } window)
        {
            json["sliding_window"] = window;
            if (qwen) json["use_sliding_window"] = true;
        }
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static IReadOnlyList<string> WeightFiles(string directory)
    {
        var single = Path.Combine(directory, WeightsFile);
        var index = Path.Combine(directory, IndexFile);
        if (File.Exists(index))
        {
            JsonObject? map;
            try
            {
                map = JsonNode.Parse(File.ReadAllText(index))?["weight_map"] as JsonObject;
            }
            catch (JsonException e)
            {
                throw new InvalidCheckpointException($"{index}: not valid JSON ({e.Message}).");
            }
            if (map is null) throw new InvalidCheckpointException($"{index}: has no weight_map.");
            return map.Select(e => e.Value!.GetValue<string>()).Distinct().Order()
                      .Select(shard => Path.Combine(directory, shard)).ToList();
        }
        if (File.Exists(single)) return [single];
        throw new InvalidCheckpointException($"{directory}: neither {WeightsFile} nor {IndexFile} is there.");
    }
}
