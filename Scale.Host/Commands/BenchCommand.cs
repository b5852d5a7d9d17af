using System.ComponentModel;
using System.Diagnostics;
using System.Text.Json;
using Scale.Model;
using Scale.Actors.Reports;
using Scale.Model.Bench;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>
/// `scale bench`: each method runs in a child process of its own (`scale bench --only METHOD --json`), so that
/// every method's peak memory is its own and not the high-water mark of the methods before it.
/// </summary>
internal sealed class BenchCommand : Command<BenchCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--json"), Description("Print a JSON array (one object per method) instead of a table.")]
        public bool Json { get; init; }

        [CommandOption("--methods <LIST>"), Description("Comma-separated methods (default full,preserve,adapt,route,depth,lora).")]
        public string Methods { get; init; } = string.Join(",", BenchSettings.Methods);

        [CommandOption("--only <METHOD>"), Description("Run one method in this process (used by the parent run).")]
        public string? Only { get; init; }

        [CommandOption("--steps <N>"), Description("Timed steps per method (default 20)."), DefaultValue(20)]
        public int Steps { get; init; } = 20;

        [CommandOption("--warmup <N>"), Description("Untimed steps first (default 3)."), DefaultValue(3)]
        public int Warmup { get; init; } = 3;

        [CommandOption("--threads <N>"), Description("libtorch threads; 0 = all cores (default)."), DefaultValue(0)]
        public int Threads { get; init; }

        [CommandOption("--device <DEVICE>"), Description("cpu, cuda or cuda:N (default cpu)."), DefaultValue("cpu")]
        public string Device { get; init; } = "cpu";

        [CommandOption("--rounds <N>"), Description("Run every method N times, interleaved, and report the median run (default 1)."), DefaultValue(1)]
        public int Rounds { get; init; } = 1;

        [CommandOption("--group <K>"), Description("Also train K trials of each method together, once in lock-step (sharing the base's forward) and once each computing its own (default 1: off)."), DefaultValue(1)]
        public int Group { get; init; } = 1;

        [CommandOption("--lock-step"), Description("With --only and --group: share the base's forward (used by the parent run).")]
        public bool LockStep { get; init; }

        [CommandOption("--peak"), Description("Only the machine's matrix-product peak: a 2048³ product in fp32 and in bf16, GFLOP/s, one JSON line each.")]
        public bool Peak { get; init; }

        [CommandOption("--precision <TYPE>"), Description("fp32 (default), or bf16: mixed precision with the frozen base resident in bf16 (CUDA, or a CPU with bf16 units)."), DefaultValue("fp32")]
        public string Precision { get; init; } = "fp32";

        public override ValidationResult Validate()
        {
            if (Group < 1) return ValidationResult.Error($"--group must be at least 1, got {Group}.");
            if (Rounds < 1) return ValidationResult.Error($"--rounds must be at least 1, got {Rounds}.");
            if (Steps < 1) return ValidationResult.Error($"--steps must be at least 1, got {Steps}.");
            if (Warmup < 0) return ValidationResult.Error($"--warmup must be zero or more, got {Warmup}.");
            if (Threads < 0) return ValidationResult.Error($"--threads must be zero or more, got {Threads}.");
            foreach (var method in MethodList)
                if (!BenchSettings.Methods.Contains(method))
                    return ValidationResult.Error($"Unknown bench method '{method}'; choose from {string.Join(", ", BenchSettings.Methods)}.");
            return ValidationResult.Success();
        }

        public IReadOnlyList<string> MethodList => (Only ?? Methods)
            .Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(m => m.ToLowerInvariant()).ToList();
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        TorchStartup.Start(settings.Precision);
        if (settings.Peak)
        {
            Devices.UseThreads(settings.Threads);
            Console.WriteLine(JsonSerializer.Serialize(ThroughputBench.Peak(TorchSharp.torch.ScalarType.Float32)));
            if (Scale.Model.Native.CpuFeatures.Bf16) Console.WriteLine(JsonSerializer.Serialize(ThroughputBench.Peak(TorchSharp.torch.ScalarType.BFloat16)));
            return 0;
        }
        var bench = new BenchSettings
        {
            Steps = settings.Steps, WarmupSteps = settings.Warmup, Precision = Devices.ParsePrecision(settings.Precision, [settings.Device]),
        };
        if (settings.Only is { } only)
        {
            Devices.UseThreads(settings.Threads);
            var result = settings.Group > 1 || settings.LockStep
                ? ThroughputBench.RunGroup(only, bench, Devices.Parse(settings.Device), settings.Group, settings.LockStep)
                : ThroughputBench.Run(only, bench, Devices.Parse(settings.Device));
            Console.WriteLine(JsonSerializer.Serialize(result));
            return 0;
        }
        Devices.Parse(settings.Device);   // fail fast, before any child starts
        // Each run: a method alone, and with --group K, K of it in lock-step and K each on its own.
        var variants = settings.MethodList.SelectMany(m => settings.Group > 1
            ? new (string Method, int Group, bool LockStep)[] { (m, 1, false), (m, settings.Group, true), (m, settings.Group, false) }
            : [(m, 1, false)]).ToList();
        var runs = variants.ToDictionary(v => v, _ => new List<BenchResult>());
        List<BenchResult> Summaries() => runs.Select(r => BenchTable.MedianRun(r.Value)).ToList();
        if (settings.Json)
        {
            for (int round = 0; round < settings.Rounds; round++)
                foreach (var variant in variants) runs[variant].Add(RunChild(variant, settings));
            Console.WriteLine(JsonSerializer.Serialize(Summaries(), Indented));
            return 0;
        }
        AnsiConsole.MarkupLine($"[bold]scale bench[/]: d {bench.Model.HiddenSize}, {bench.Model.NumLayers} layers, {bench.Model.NumHeads} heads, " +
                               $"FFN {bench.Model.IntermediateSize}, vocab {bench.Model.VocabSize}; batch {bench.Batch} × {bench.SequenceLength} tokens; " +
                               $"{bench.WarmupSteps} + {bench.Steps} steps per method, each in its own process");
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .Start(progress =>
            {
                var overall = progress.AddTask("all methods", maxValue: variants.Count * settings.Rounds);
                for (int round = 0; round < settings.Rounds; round++)
                    foreach (var variant in variants)
                    {
                        overall.Description = $"round {round + 1}/{settings.Rounds}: [blue]{BenchTable.Label(variant)}[/]";
                        runs[variant].Add(RunChild(variant, settings));
                        overall.Increment(1);
                    }
                overall.Description = "all methods";
            });
        BenchTable.Write(Summaries());
        return 0;
    }

    private static BenchResult RunChild((string Method, int Group, bool LockStep) variant, Settings settings)
    {
        var method = variant.Method;
        var start = SelfInvocation.Start(["bench", "--only", method, "--steps", settings.Steps.ToString(), "--warmup",
            settings.Warmup.ToString(), "--threads", settings.Threads.ToString(), "--device", settings.Device, "--group", variant.Group.ToString(),
            "--precision", settings.Precision,
            .. variant.LockStep ? ["--lock-step"] : Array.Empty<string>()]);
        using var child = Process.Start(start) ?? throw new InvalidOperationException("Could not start the bench child process.");
        var stderr = child.StandardError.ReadToEndAsync();
        var output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        if (child.ExitCode != 0)
            throw new InvalidOperationException($"The bench of '{method}' failed (exit {child.ExitCode}): {stderr.Result.Trim()}");
        var line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last();
        return JsonSerializer.Deserialize<BenchResult>(line) ?? throw new InvalidOperationException($"The bench of '{method}' printed no result.");
    }
}

/// <summary>How to start this same program again as a child process (apphost, or `dotnet scale.dll`).</summary>
internal static class SelfInvocation
{
    public static ProcessStartInfo Start(IEnumerable<string> arguments)
    {
        var host = Environment.ProcessPath ?? "dotnet";
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") start.ArgumentList.Add(typeof(SelfInvocation).Assembly.Location);
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        return start;
    }
}
