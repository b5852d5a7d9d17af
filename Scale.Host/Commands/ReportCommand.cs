using System.ComponentModel;
using Scale.Actors.Persistence;
using Scale.Actors.Reports;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>`scale report SWEEP --out DIR`: the sweep's plots and report.md, written by <see cref="SweepReportFiles"/>.</summary>
internal sealed class ReportCommand : AsyncCommand<ReportCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<SWEEP>"), Description("The sweep's name.")]
        public string Sweep { get; init; } = "";

        [CommandOption("--out <DIR>"), Description("Where the report goes (default ./report-<sweep>).")]
        public string? Out { get; init; }

        [CommandOption("--data-dir <DIR>"), Description("Where the sweeps' journal lives (default ./scale-data)."), DefaultValue("scale-data")]
        public string DataDir { get; init; } = "scale-data";
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        var state = await SweepJournal.Read(settings.DataDir, settings.Sweep);
        var output = Directory.CreateDirectory(settings.Out ?? $"report-{settings.Sweep}").FullName;
        var report = SweepReportFiles.Write(settings.DataDir, settings.Sweep, state, output);
        Console.WriteLine($"Wrote {Path.Combine(output, "report.md")} and {string.Join(", ", report.Written)} ({report.Points} points in pareto.png, {report.Curves} loss curves).");
        return 0;
    }
}
