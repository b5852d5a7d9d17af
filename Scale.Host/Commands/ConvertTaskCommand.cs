using System.ComponentModel;
using Scale.Model.Evaluation;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>`scale convert-task`: a benchmark's Hugging Face JSON layout to a task file for `scale score`.</summary>
internal sealed class ConvertTaskCommand : Command<ConvertTaskCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<LAYOUT>"), Description("arc, hellaswag, mmlu, kobest-boolq, kobest-copa, kobest-hellaswag, kobest-sentineg or kobest-wic.")]
        public string Layout { get; init; } = "";

        [CommandArgument(1, "<INPUT>"), Description("The dataset split as JSON Lines or a JSON array, in the Hugging Face dataset's own fields.")]
        public string Input { get; init; } = "";

        [CommandOption("--out <FILE>"), Description("The task file to write (JSON Lines).")]
        public string? Out { get; init; }

        public override ValidationResult Validate()
            => string.IsNullOrWhiteSpace(Out) ? ValidationResult.Error("--out FILE is required.") : ValidationResult.Success();
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        var items = TaskConverters.Convert(settings.Layout, settings.Input);
        var directory = Path.GetDirectoryName(Path.GetFullPath(settings.Out!));
        if (directory is not null) Directory.CreateDirectory(directory);
        TaskFile.Write(settings.Out!, items);
        Console.WriteLine($"Wrote {items.Count} {settings.Layout} items to {settings.Out} (`scale score --model DIR --task {settings.Out}` scores them).");
        return 0;
    }
}
