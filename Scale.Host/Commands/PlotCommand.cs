using System.ComponentModel;
using Scale.Actors.Sweeps;
using Scale.Host.Sweeps;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>
/// `scale plot SWEEP... --out FILE.png`: every completed trial of the sweeps as a point (retention, acquisition),
/// coloured by method, the Pareto front of all points (higher is better on both axes: recall sweeps), and the
/// goal region (forgetting ≤ 0.05, acquisition ≥ 0.80).
/// </summary>
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
    }

    internal sealed record Point(string Sweep, string Trial, string Method, double Retention, double Acquisition, double BaseOld);

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        if (settings.Sweeps.Length == 0) throw new ArgumentException("Name at least one sweep.");
        var points = new List<Point>();
        foreach (var sweep in settings.Sweeps)
        {
            var state = await SweepJournal.Read(settings.DataDir, sweep);
            points.AddRange(state.Order.Select(id => state.Trials[id]).Where(t => t.Metrics is not null)
                .Select(t => new Point(sweep, t.Spec.Id, t.Spec.Method, t.Metrics!.Retention, t.Metrics.Acquisition, t.Metrics.Retention + t.Metrics.Forgetting)));
        }
        if (points.Count == 0) throw new ArgumentException($"No completed trials in {string.Join(", ", settings.Sweeps)} yet.");
        Draw(points, settings.Title ?? string.Join(" + ", settings.Sweeps), settings.Out);
        var front = ParetoFront(points);
        Console.WriteLine($"Wrote {settings.Out}: {points.Count} trials, {front.Count} on the Pareto front:");
        foreach (var p in front) Console.WriteLine($"  {p.Trial,-22} retention {p.Retention:0.000}  acquisition {p.Acquisition:0.000}");
        return 0;
    }

    /// <summary>The points no other point beats on both retention and acquisition, by retention ascending.</summary>
    internal static IReadOnlyList<Point> ParetoFront(IReadOnlyList<Point> points)
        => points.Where(p => !points.Any(q => q.Retention >= p.Retention && q.Acquisition >= p.Acquisition
                                               && (q.Retention > p.Retention || q.Acquisition > p.Acquisition)))
                 .DistinctBy(p => (p.Retention, p.Acquisition)).OrderBy(p => p.Retention).ToList();

    internal static void Draw(IReadOnlyList<Point> points, string title, string path)
    {
        var plot = new ScottPlot.Plot();
        double baseOld = points.Max(p => p.BaseOld);
        var goal = plot.Add.Rectangle(baseOld - 0.05, 1.02, 0.80, 1.02);
        goal.FillStyle.Color = ScottPlot.Colors.Green.WithAlpha(0.12);
        goal.LineStyle.Width = 0;
        goal.LegendText = "goal: forgetting ≤ 0.05, acquisition ≥ 0.80";
        var palette = new ScottPlot.Palettes.Category10();
        foreach (var (group, index) in points.GroupBy(p => p.Method).OrderBy(g => g.Key).Select((g, i) => (g, i)))
        {
            var scatter = plot.Add.Scatter(group.Select(p => p.Retention).ToArray(), group.Select(p => p.Acquisition).ToArray());
            scatter.LineWidth = 0;
            scatter.MarkerSize = 9;
            scatter.Color = palette.GetColor(index);
            scatter.LegendText = group.Key;
        }
        var front = ParetoFront(points);
        if (front.Count > 1)
        {
            var line = plot.Add.Scatter(front.Select(p => p.Retention).ToArray(), front.Select(p => p.Acquisition).ToArray());
            line.MarkerSize = 0;
            line.LineWidth = 1.5f;
            line.LinePattern = ScottPlot.LinePattern.Dashed;
            line.Color = ScottPlot.Colors.Gray;
            line.LegendText = "Pareto front";
        }
        plot.Title(title);
        plot.XLabel($"retention (recall of the old people; base {baseOld:0.000})");
        plot.YLabel("acquisition (recall of the new people)");
        plot.Axes.SetLimits(-0.02, 1.02, -0.02, 1.02);
        plot.ShowLegend(ScottPlot.Alignment.MiddleRight);
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        plot.SavePng(path, 900, 650);
    }
}
