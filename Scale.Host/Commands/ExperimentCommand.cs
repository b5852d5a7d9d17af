using System.ComponentModel;
using System.Text.Json;
using Scale.Actors.Sweeps;
using Scale.Model;
using Scale.Model.Experiments;
using Spectre.Console;
using Spectre.Console.Cli;
using Scale.Actors.Reports;

namespace Scale.Host.Commands;

internal sealed class ExperimentCommand : Command<ExperimentCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<EXPERIMENT>"), Description("A built-in experiment (bio, bio-ko, bio-qa, bio-validation, text) or a .hocon file.")]
        public string Experiment { get; init; } = "";

        [CommandOption("--json"), Description("Print the result as JSON.")]
        public bool Json { get; init; }

        [CommandOption("--data-dir <DIR>"), Description("Where bases are cached (default ./scale-data)."), DefaultValue("scale-data")]
        public string DataDir { get; init; } = "scale-data";

        [CommandOption("--old <DIR>"), Description("Old corpus folder (text experiments).")]
        public string? Old { get; init; }

        [CommandOption("--new <DIR>"), Description("New corpus folder (text experiments).")]
        public string? New { get; init; }

        [CommandOption("--methods <LIST>"), Description("Override the experiment's methods (comma-separated).")]
        public string? Methods { get; init; }

        [CommandOption("--threads <N>"), Description("libtorch threads; 0 = all cores (default)."), DefaultValue(0)]
        public int Threads { get; init; }

        [CommandOption("--devices|--device <DEVICES>"), Description("Comma-separated devices, one trainer each, taking the methods in turn: cpu, cpu:N, cuda or cuda:N (a CUDA build). Default cpu."), DefaultValue("cpu")]
        public string Devices { get; init; } = "cpu";

        [CommandOption("--precision <TYPE>"), Description("fp32 (default), or bf16: mixed precision with the frozen base resident in bf16 (CUDA, or a CPU with bf16 units)."), DefaultValue("fp32")]
        public string Precision { get; init; } = "fp32";
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        TorchStartup.Start(settings.Precision);
        var spec = ExperimentFiles.Load(settings.Experiment);
        if (settings.Old is not null) spec = spec with { Old = spec.Old with { Folder = settings.Old, Corpus = null } };
        if (settings.New is not null) spec = spec with { New = spec.New with { Folder = settings.New, Corpus = null } };
        if (settings.Methods is not null)
            spec = spec with { Methods = settings.Methods.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) };
        spec.Validate();
        var names = Devices.ParseList(settings.Devices);
        var precision = Devices.ParsePrecision(settings.Precision, names);
        var devices = names.Select(Devices.Parse).ToList();
        if (settings.Threads < 0) throw new ArgumentException($"--threads must be 0 (all cores) or more, got {settings.Threads}.");
        Devices.UseThreads(settings.Threads);
        int threadsPerDevice = devices.Count == 1 ? 0 : Math.Max(1, (settings.Threads > 0 ? settings.Threads : Environment.ProcessorCount) / devices.Count);
        ExperimentResult result;
        if (settings.Json || Console.IsOutputRedirected)
        {
            result = TwoPhaseExperiment.Run(spec, settings.DataDir, new SynchronousProgress(p => { if (p.Note is not null) Console.Error.WriteLine($"[{p.Phase}] {p.Note}"); }),
                                            cancellation, devices, threadsPerDevice, precision);
        }
        else
        {
            result = null!;
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var tasks = new Dictionary<string, ProgressTask>();
                    var gate = new Lock();
                    var reporter = new SynchronousProgress(p =>
                    {
                        using var held = gate.EnterScope();   // several devices report at once
                        if (p.Note is not null) AnsiConsole.MarkupLine($"[grey]{Markup.Escape(p.Note)}[/]");
                        if (p.TotalSteps == 0) return;
                        var key = $"{p.Phase}:{p.Method}";
                        if (!tasks.TryGetValue(key, out var task)) tasks[key] = task = ctx.AddTask(key, maxValue: p.TotalSteps);
                        task.Value = p.Step;
                        task.Description = $"{p.Phase} [blue]{p.Method}[/] step {p.Step}/{p.TotalSteps} loss {p.Loss:0.000} {p.TokensPerSecond:N0} tok/s";
                    });
                    result = TwoPhaseExperiment.Run(spec, settings.DataDir, reporter, cancellation, devices, threadsPerDevice, precision);
                });
        }
        if (settings.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(result, new JsonSerializerOptions
            {
                WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
            }));
            return 0;
        }
        // One column per task of the suites: its headline metric, as every method scored it.
        var tasks = Scale.Model.Evaluation.TaskResult.Columns(result.Methods.Select(m => m.Tasks));
        var table = new Table().Title($"{result.Experiment}: {result.Metric}")
            .AddColumns(["method", "trainable params", "retention", "acquisition", "forgetting", .. tasks.Select(Markup.Escape), "tokens/s"]);
        table.AddRow(["base (before CPT)", result.BaseParams.ToString("N0"), result.BaseOld.ToString("0.000"), result.BaseNew.ToString("0.000"), "", .. tasks.Select(_ => ""), ""]);
        foreach (var m in result.Methods)
            table.AddRow([m.Method, m.TrainableParams.ToString("N0"), m.Retention.ToString("0.000"), m.Acquisition.ToString("0.000"),
                          m.Forgetting.ToString("0.000"),
                          .. tasks.Select(label => Scale.Model.Evaluation.TaskResult.In(m.Tasks, label)?.Text ?? "—"),
                          m.TokensPerSecond > 0 ? m.TokensPerSecond.ToString("N0") : "—"]);
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"base pre-training {(result.BaseCached ? "cached" : $"{result.BasePretrainSeconds:0} s")}, best step {result.BaseBestStep}; wall time {result.WallSeconds:0} s");
        return 0;
    }
}
