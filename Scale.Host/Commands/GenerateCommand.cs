using System.ComponentModel;
using Scale.Model;
using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Scale.Model.Transformer;
using Spectre.Console;
using TorchSharp;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

internal sealed class GenerateCommand : Command<GenerateCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--model <DIR>"), Description("Model directory: config.json + model.safetensors (or shards with an index).")]
        public string? Model { get; init; }

        [CommandOption("--prompt-ids <IDS>"), Description("Prompt as comma-separated token ids, e.g. 1,2,3.")]
        public string? PromptIds { get; init; }

        [CommandOption("--prompt <TEXT>"), Description("Prompt as text (needs the model directory's tokenizer.json).")]
        public string? Prompt { get; init; }

        [CommandOption("--max-new-tokens <N>"), Description("Tokens to generate (default 32)."), DefaultValue(32)]
        public int MaxNewTokens { get; init; } = 32;

        [CommandOption("--ids"), Description("Print the continuation as token ids.")]
        public bool Ids { get; init; }

        [CommandOption("--device <DEVICE>"), Description("cpu, cuda or cuda:N (default cpu)."), DefaultValue("cpu")]
        public string Device { get; init; } = "cpu";

        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Model)) return ValidationResult.Error("--model DIR is required.");
            if ((PromptIds is null) == (Prompt is null)) return ValidationResult.Error("Give exactly one of --prompt-ids or --prompt.");
            if (MaxNewTokens < 1) return ValidationResult.Error($"--max-new-tokens must be at least 1, got {MaxNewTokens}.");
            return ValidationResult.Success();
        }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        TorchStartup.Start();
        var tokenizerPath = Path.Combine(settings.Model!, HfTokenizer.FileName);
        var config = HfCheckpoint.ReadConfig(settings.Model!);
        using var tokenizer = File.Exists(tokenizerPath) ? HfTokenizer.Load(settings.Model!, config.VocabSize) : null;
        long[] prompt;
        if (settings.Prompt is { } text)
        {
            if (tokenizer is null)
                throw new ArgumentException($"Text prompts need {tokenizerPath} (a Hugging Face tokenizer.json); give the prompt as token ids with --prompt-ids 1,2,3.");
            prompt = tokenizer.Encode(text).Select(id => (long)id).ToArray();
        }
        else prompt = ParseIds(settings.PromptIds!);
        var device = Devices.Parse(settings.Device);
        using var model = TrialExport.Load(settings.Model!);   // a Hugging Face checkpoint, or a SCALE export (base + expansion)
        model.to(device);
        var continuation = Generation.Greedy(model, prompt, settings.MaxNewTokens, tokenizer?.EndOfTextId);
        if (settings.Ids || tokenizer is null)
        {
            if (!settings.Ids) CommandErrors.Stderr.MarkupLine("[grey]No tokenizer.json beside this model: printing token ids.[/]");
            Console.WriteLine(string.Join(",", continuation));
        }
        else Console.WriteLine(tokenizer.Decode(continuation.Where(id => id != tokenizer.EndOfTextId).Select(id => (int)id)));
        return 0;
    }

    internal static long[] ParseIds(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new ArgumentException("--prompt-ids is empty; give ids such as 1,2,3.");
        return parts.Select(p => long.TryParse(p, out var id) && id >= 0
            ? id
            : throw new ArgumentException($"--prompt-ids: '{p}' is not a token id (a non-negative integer).")).ToArray();
    }
}
