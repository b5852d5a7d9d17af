using System.Text.Json;
using System.Text.Json.Serialization;
using Scale.Model.Baselines;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Checkpoints;

/// <summary>
/// A trained trial taken out of Scale (`scale export`). Full fine-tuning, Freeze, depth expansion and LoRA (merged into
/// its base weights) become plain Hugging Face checkpoints of the base's family, which any Llama/Qwen2/Mistral
/// loader reads. A SCALE model (Preserve, Adapt, Route) has no Hugging Face architecture: it is the frozen base as a
/// Hugging Face checkpoint, plus scale.json (the method with its expansion and routing rule, and the seed of its
/// initialisation) and expansion.safetensors (the trained tensors); <see cref="Load"/> rebuilds it, so
/// `scale generate --model DIR` generates with the upscaled (and, for Route, the routed) model.
/// </summary>
internal static class TrialExport
{
    public const string ScaleFile = "scale.json";
    public const string ExpansionFile = "expansion.safetensors";

    private static readonly string[] TokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

    /// <summary>What scale.json records: the method as planned, and the seed its untrained blocks were initialised from.</summary>
    public sealed record ScaleModel(
        [property: JsonPropertyName("method")] MethodSpec Method,
        [property: JsonPropertyName("seed")] long Seed,
        [property: JsonPropertyName("format")] int Format = 1);

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Converters = { new JsonStringEnumConverter() } };

    /// <summary>
    /// Writes the trial of <paramref name="method"/> on <paramref name="baseModel"/> with the weights of
    /// <paramref name="checkpoint"/> into <paramref name="output"/> (a new directory; written whole or not at all), with the
    /// tokenizer files of <paramref name="tokenizerDirectory"/>. Returns what was written, in words.
    /// </summary>
    public static string Write(Decoder baseModel, MethodSpec method, long seed, string? checkpoint, string tokenizerDirectory, string output)
    {
        if (Directory.Exists(output) || File.Exists(output)) throw new ArgumentException($"{output} already exists; give a new directory for the export.");
        var partial = output.TrimEnd(Path.DirectorySeparatorChar) + ".partial";
        if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        var model = method.Build(baseModel, seed);
        try
        {
            if (checkpoint is not null) TrialCheckpoint.LoadWeights(checkpoint, model);
            string what;
            switch (method.Kind)
            {
                case MethodKind.Frozen or MethodKind.Full or MethodKind.Freeze or MethodKind.Depth:
                    HfCheckpoint.Save((Decoder)model, partial);
                    what = $"a Hugging Face checkpoint ({((Decoder)model).Config.NumLayers} layers)";
                    break;
                case MethodKind.Lora:
                    using (var merged = Merged((Decoder)model, baseModel)) HfCheckpoint.Save(merged, partial);
                    what = "a Hugging Face checkpoint with the LoRA updates merged into the base weights";
                    break;
                default:
                    HfCheckpoint.Save(baseModel, partial);
                    SafetensorsFile.Save(Path.Combine(partial, ExpansionFile),
                        model.TrainableParameters().ToDictionary(p => p.Name, p => (Tensor)p.Parameter.detach().cpu()));
                    File.WriteAllText(Path.Combine(partial, ScaleFile), JsonSerializer.Serialize(new ScaleModel(method, seed), Json));
                    what = $"the base as a Hugging Face checkpoint, with {ScaleFile} and {ExpansionFile} (SCALE-{method.Kind}" +
                           (method.Expansion?.Routing is { } routing ? $", routed by {routing}" : "") + ")";
                    break;
            }
            foreach (var file in TokenizerFiles)
            {
                var source = Path.Combine(tokenizerDirectory, file);
                if (File.Exists(source)) File.Copy(source, Path.Combine(partial, file));
            }
            Directory.Move(partial, output);
            return what;
        }
        catch
        {
            if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
            throw;
        }
        finally
        {
            if (method.Kind != MethodKind.Frozen) TrialModels.ReleaseOwnTensors(model, baseModel);
        }
    }

    /// <summary>The model in <paramref name="directory"/>: a SCALE export rebuilt on its base, or a plain Hugging Face checkpoint.</summary>
    public static CausalLM Load(string directory)
    {
        var scalePath = Path.Combine(directory, ScaleFile);
        if (!File.Exists(scalePath)) return HfCheckpoint.Load(directory);
        ScaleModel saved;
        try
        {
            saved = JsonSerializer.Deserialize<ScaleModel>(File.ReadAllText(scalePath), Json) ?? throw new JsonException("empty");
        }
        catch (JsonException e)
        {
            throw new InvalidCheckpointException($"{scalePath}: not a SCALE export ({e.Message}).");
        }
        if (saved.Format != 1) throw new InvalidCheckpointException($"{scalePath}: format {saved.Format} is not one Scale reads (1).");
        var baseModel = HfCheckpoint.Load(directory).Freeze();
        var model = saved.Method.Build(baseModel, saved.Seed);
        var expansionPath = Path.Combine(directory, ExpansionFile);
        if (!File.Exists(expansionPath)) throw new InvalidCheckpointException($"{directory}: {ExpansionFile} is missing.");
        TrialCheckpoint.LoadTrainable(expansionPath, model, expansionPath);
        foreach (var (_, p) in model.DistinctParameters()) p.requires_grad = false;
        return model;
    }

    /// <summary>A plain decoder whose target linears hold base + scaling·B·A: what the LoRA model computes.</summary>
    private static Decoder Merged(Decoder lora, Decoder baseModel)
    {
        var merged = baseModel.DeepClone();
        var targets = merged.DistinctParameters().ToDictionary(p => p.Name, p => p.Parameter);
        using (no_grad())
        {
            foreach (var (name, module) in lora.named_modules())
                if (module is LoraLinear adapter) targets[name + ".weight"].copy_(adapter.MergedWeight());
        }
        return merged.Freeze();
    }
}
