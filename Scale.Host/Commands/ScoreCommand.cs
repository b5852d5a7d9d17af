using System.ComponentModel;
using System.Diagnostics;
using Scale.Model;
using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Actors.Sweeps;
using TorchSharp;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>`scale score`: a model directory (imported, or exported by `scale export`, SCALE models included) on a task file.</summary>
internal sealed class ScoreCommand : Command<ScoreCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--model <DIR>"), Description("Model directory: a Hugging Face checkpoint with tokenizer.json, or a `scale export` directory (SCALE models too).")]
        public string? Model { get; init; }

        [CommandOption("--task <FILE>"), Description("The task: JSON Lines of {\"context\", \"choices\", \"gold\"} (multiple choice) or {\"context\", \"target\"} (generation), or a task card (.hocon: name, file, fewshot, shots, seed, metric).")]
        public string? Task { get; init; }

        [CommandOption("--fewshot <FILE>"), Description("A task file to draw --shots solved examples from (put before every item).")]
        public string? FewShot { get; init; }

        [CommandOption("--shots <N>"), Description("Solved examples before every item (default 0; needs --fewshot)."), DefaultValue(0)]
        public int Shots { get; init; }

        [CommandOption("--seed <N>"), Description("Which examples --shots draws (default 1234).")]
        public int? Seed { get; init; }

        [CommandOption("--batch <N>"), Description("Sequences scored at once (default 32)."), DefaultValue(32)]
        public int Batch { get; init; } = 32;

        [CommandOption("--device <DEVICE>"), Description("cpu, cuda or cuda:N (default cpu)."), DefaultValue("cpu")]
        public string Device { get; init; } = "cpu";

        [CommandOption("--format <FORMAT>"), Description("text (default) or json."), DefaultValue("text")]
        public string Format { get; init; } = "text";

        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Model)) return ValidationResult.Error("--model DIR is required.");
            if (string.IsNullOrWhiteSpace(Task)) return ValidationResult.Error("--task FILE is required.");
            if (Shots < 0) return ValidationResult.Error($"--shots must be 0 or more, got {Shots}.");
            if (Shots > 0 && FewShot is null) return ValidationResult.Error("--shots needs --fewshot FILE to draw the examples from.");
            if (Batch < 1) return ValidationResult.Error($"--batch must be at least 1, got {Batch}.");
            if (Format is not ("text" or "json")) return ValidationResult.Error($"--format must be text or json, got '{Format}'.");
            return ValidationResult.Success();
        }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        // The task files are read and checked before any model loads. A card says its own files, shots and seed.
        if (TaskCards.IsCard(settings.Task!) && (settings.FewShot is not null || settings.Shots > 0 || settings.Seed is not null))
            throw new ArgumentException($"{settings.Task} is a task card: it gives the few-shot file, shots and seed itself (leave out --fewshot, --shots and --seed).");
        var spec = TaskCards.IsCard(settings.Task!)
            ? TaskCards.Read(settings.Task!)
            : new TaskSpec
            {
                Name = Path.GetFileNameWithoutExtension(settings.Task!), File = settings.Task, FewShotFile = settings.FewShot, Shots = settings.Shots,
                Seed = settings.Seed ?? TaskSpec.DefaultSeed,
            }.Validate("--task");
        var suite = TaskSuite.Load("task", spec);
        var (items, shots) = (suite.Items, suite.Prompting.Shots);
        var tokenizerFile = Path.Combine(settings.Model!, HfTokenizer.FileName);
        if (!File.Exists(tokenizerFile)) throw new ArgumentException($"{settings.Model}: no {HfTokenizer.FileName}: scoring text needs the model's tokenizer.");
        TorchStartup.Start();
        var config = HfCheckpoint.ReadConfig(settings.Model!);
        using var tokenizer = HfTokenizer.Load(settings.Model!, config.VocabSize);
        using var model = TrialExport.Load(settings.Model!);
        model.to(Devices.Parse(settings.Device));
        model.eval();
        var clock = Stopwatch.StartNew();
        var score = TaskScoring.Score(model, tokenizer, items, suite.Prompting, settings.Batch);
        var name = spec.Name;
        if (settings.Format == "json")
        {
            Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(new
            {
                task = name, items = score.Items, shots = shots.Count, metric = suite.Metric, seconds = Math.Round(clock.Elapsed.TotalSeconds, 3),
                metrics = score.Metrics.ToDictionary(m => m.Name, m => new { value = m.Value, stderr = m.StandardError }),
            }));
            return 0;
        }
        var metrics = string.Join(", ", score.Metrics.Select(m => $"{m.Name} {m.Value:0.0000}" + (m.StandardError is { } error ? $" ± {error:0.0000}" : "")));
        Console.WriteLine($"{name}: {metrics} ({score.Items} items, {shots.Count}-shot, {clock.Elapsed.TotalSeconds:0.0} s)");
        return 0;
    }
}
