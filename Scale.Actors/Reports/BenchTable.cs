using Scale.Model.Bench;
using Spectre.Console;

namespace Scale.Actors.Reports;

/// <summary>`scale bench`'s table: each method's median run, and its step time and memory against full fine-tuning's (a group's against one trial's).</summary>
internal static class BenchTable
{
    public static void Write(IReadOnlyList<BenchResult> results)
    {
        var table = new Table().AddColumns("method", "tokens/s", "step ms", "params", "trainable", "peak RSS MB", "threads");
        foreach (var r in results)
            table.AddRow(Label((r.Method, r.Members, r.LockStep)), r.TokensPerSecond.ToString("N0"), r.StepMs.ToString("N1"), r.Params.ToString("N0"),
                         r.TrainableParams.ToString("N0"), r.PeakRssMb.ToString("N0"), r.Threads.ToString());
        AnsiConsole.Write(table);
        if (results.FirstOrDefault(r => r.Method == "full" && r.Members == 1) is { } full)
            foreach (var r in results.Where(r => r.Method != "full" && r.Members == 1))
                AnsiConsole.MarkupLine($"  {r.Method}: step time {r.StepMs / full.StepMs:0.00} × full fine-tuning's, peak RSS {r.PeakRssMb / full.PeakRssMb:0.00} ×");
        foreach (var r in results.Where(r => r.Members > 1))
            if (results.FirstOrDefault(o => o.Method == r.Method && o.Members == 1) is { } one)
                AnsiConsole.MarkupLine($"  {Label((r.Method, r.Members, r.LockStep))}: wall time {r.StepMs / one.StepMs:0.00} × one trial's, peak RSS {r.PeakRssMb / one.PeakRssMb:0.00} ×");
    }

    public static string Label((string Method, int Group, bool LockStep) v)
        => v.Group == 1 ? v.Method : $"{v.Method} ×{v.Group} {(v.LockStep ? "lock-step" : "one by one")}";

    /// <summary>The run with the median step time, labelled with the number of rounds.</summary>
    public static BenchResult MedianRun(IReadOnlyList<BenchResult> runs)
        => runs.OrderBy(r => r.StepMs).ElementAt(runs.Count / 2) with { Rounds = runs.Count };
}
