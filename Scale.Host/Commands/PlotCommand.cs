using System.ComponentModel;
using Scale.Actors.Persistence;
using Scale.Actors.Reports;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>`scale plot SWEEP... --out FILE.png`: the sweeps' completed trials and routed rows drawn by <see cref="ResultPlot"/>.</summary>
internal sealed class PlotCommand : AsyncCommand<PlotCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<SWEEPS>"), Description("One or more sweeps (their points share the plot).")]
        public string[] Sweeps { get; init; } = [];

        [CommandOption("--out <FILE>"), Description("The PNG to write."), DefaultValue("pareto.png")]
        public string Out { get; init; } = "pareto.png";

        [CommandOption("--title <TEXT>"), Description("The plot's title (default: the sweeps' names).")]
        public string? Title { get; init; }

        [CommandOption("--data-dir <DIR>"), Description("Where the sweeps' journal lives (default ./scale-data)."), DefaultValue("scale-data")]
        public string DataDir { get; init; } = "scale-data";

        [CommandOption("--rules <LIST>"), Description("Comma-separated routing rules whose routed rows are drawn (default: every rule the sweeps scored; none: no routed rows).")]
        public string? Rules { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        if (settings.Sweeps.Length == 0) throw new ArgumentException("Name at least one sweep.");
        var points = new List<ResultPoint>();
        IReadOnlySet<string>? rules = settings.Rules is null ? null
            : settings.Rules.Trim() == "none" ? new HashSet<string>()
            : settings.Rules.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
        foreach (var sweep in settings.Sweeps)
        {
            var state = await SweepJournal.Read(settings.DataDir, sweep);
            points.AddRange(ResultPoint.All(sweep, state, rules));
        }
        if (points.Count == 0) throw new ArgumentException($"No completed trials in {string.Join(", ", settings.Sweeps)} yet.");
        if (points.Select(p => p.Metric).Distinct().Count() > 1)
            throw new ArgumentException($"{string.Join(", ", settings.Sweeps)} were scored on different metrics ({string.Join(", ", points.Select(p => p.Metric).Distinct())}); plot them separately.");
        ResultPlot.Draw(points, settings.Title ?? string.Join(" + ", settings.Sweeps), settings.Out);
        var front = ResultPlot.ParetoFront(points);
        Console.WriteLine($"Wrote {settings.Out}: {points.Count} trials, {front.Count} on the Pareto front:");
        foreach (var p in front) Console.WriteLine($"  {p.Trial,-22} retention {p.Retention:0.000}  acquisition {p.Acquisition:0.000}");
        return 0;
    }
}
