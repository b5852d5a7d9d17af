using System.ComponentModel;
using Scale.Actors.Sweeps;
using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>`scale export SWEEP TRIAL --out DIR`: a trained trial as a model directory (<see cref="TrialExport"/>).</summary>
internal sealed class ExportCommand : Command<ExportCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<SWEEP>"), Description("The sweep: a built-in name or its .hocon file (it plans the trial).")]
        public string Sweep { get; init; } = "";

        [CommandArgument(1, "<TRIAL>"), Description("The trial's id (see `scale results`).")]
        public string Trial { get; init; } = "";

        [CommandOption("--out <DIR>"), Description("A new directory for the exported model.")]
        public string? Out { get; init; }

        [CommandOption("--checkpoint <WHICH>"), Description("final (default), latest, previous, or a checkpoint directory."), DefaultValue("final")]
        public string Checkpoint { get; init; } = "final";

        [CommandOption("--data-dir <DIR>"), Description("Journal, cached bases and checkpoints (default ./scale-data)."), DefaultValue("scale-data")]
        public string DataDir { get; init; } = "scale-data";

        public override ValidationResult Validate()
            => string.IsNullOrWhiteSpace(Out) ? ValidationResult.Error("--out DIR is required (a new directory for the model).") : ValidationResult.Success();
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        TorchStartup.Start();
        var found = TrialLookup.Find(settings.Sweep, settings.Trial, settings.Checkpoint, settings.DataDir);
        var (sweep, trial, plan) = (found.Sweep, found.Trial, found.Plan);
        var checkpoint = found.ExistingCheckpoint(plan);
        // The base as the trial trained on it: the imported model, or the sweep's cached base (pre-trained if missing,
        // under the data directory's lock, as trainers prepare it).
        using var task = Scale.Actors.Trainers.BaseLock.Prepare(sweep.Experiment, settings.DataDir, null, cancellation);
        var tokenizerDirectory = sweep.Experiment.BaseModel;
        using var scratch = new ScratchDirectory();
        if (tokenizerDirectory is null)
        {
            ((ByteBpeTokenizer)task.Tokenizer).Save(Path.Combine(scratch.Path, HfTokenizer.FileName));
            tokenizerDirectory = scratch.Path;
        }
        // A calibrated rule travels with its threshold, from this experiment's old data: generation elsewhere has no old data to calibrate on.
        var method = plan.Method.Routing is { NeedsCalibration: true } rule ? plan.Method.RoutedBy(task.Runner.Scoring.Calibrate(rule, task.Base)) : plan.Method;
        var what = TrialExport.Write(task.Base, method, plan.Seed, checkpoint, tokenizerDirectory, settings.Out!);
        Console.WriteLine($"Exported {trial.Id} to {settings.Out}: {what}. `scale generate --model {settings.Out} --prompt TEXT` generates with it.");
        return 0;
    }

    private sealed class ScratchDirectory : IDisposable
    {
        public string Path { get; } = Directory.CreateDirectory(System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"scale-export-{Guid.NewGuid():N}")).FullName;

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
