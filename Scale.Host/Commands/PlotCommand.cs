using System.ComponentModel;
using Scale.Actors.Sweeps;
using Scale.Host.Sweeps;
using Scale.Model.Experiments;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>
/// `scale plot SWEEP... --out FILE.png`: every completed trial of the sweeps as a point (retention, acquisition),
/// coloured by method, each routed row in its trained method's colour as a triangle, the Pareto front of all points,
/// and the goal: on recall, the region of forgetting ≤ 0.02 with acquisition ≥ 0.90; on perplexity (both axes on a
/// log scale, lower is better), the line 2% above the base's old-text perplexity.
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

        [CommandOption("--rules <LIST>"), Description("Comma-separated routing rules whose routed rows are drawn (default: every rule the sweeps scored; none: no routed rows).")]
        public string? Rules { get; init; }
    }

    internal sealed record Point(string Sweep, string Trial, string Method, double Retention, double Acquisition, double BaseOld)
    {
        /// <summary>The scores' metric (recall or perplexity), which says which way is better.</summary>
        public string Metric { get; init; } = ScoreMetric.Recall;

        /// <summary>The routing rule of a routed row (its <see cref="Method"/> is the trained method's); null for a trained trial's own scores.</summary>
        public string? Rule { get; init; }

        /// <summary>A completed trial's point; the base score comes with its metrics (older journals: from retention and forgetting).</summary>
        public static Point Of(string sweep, TrialState trial)
        {
            var m = trial.Metrics!;
            double baseOld = m.BaseOld ?? (m.LowerIsBetter ? m.Retention - m.Forgetting : m.Retention + m.Forgetting);
            return new Point(sweep, trial.Spec.Id, trial.Spec.Method, m.Retention, m.Acquisition, baseOld) { Metric = m.Metric ?? ScoreMetric.Recall };
        }

        /// <summary>
        /// Every completed trial of a sweep, and each of its rows under the sweep's routing rules ("{trial}@{rule}", with the
        /// trained method and the rule), of the rules in <paramref name="rules"/> when it is given.
        /// </summary>
        public static IEnumerable<Point> All(string sweep, SweepState state, IReadOnlySet<string>? rules = null)
            => state.Order.Select(id => state.Trials[id]).Where(t => t.Metrics is not null).SelectMany(t =>
            {
                var trained = Of(sweep, t);
                return new[] { trained }.Concat((t.Metrics!.Routed ?? new Dictionary<string, RoutedScores>())
                    .Where(r => rules is null || rules.Contains(r.Key))
                    .Select(r => trained with
                    {
                        Trial = $"{t.Spec.Id}@{r.Key}", Rule = r.Key, Retention = r.Value.Retention, Acquisition = r.Value.Acquisition,
                    }));
            });
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        if (settings.Sweeps.Length == 0) throw new ArgumentException("Name at least one sweep.");
        var points = new List<Point>();
        IReadOnlySet<string>? rules = settings.Rules is null ? null
            : settings.Rules.Trim() == "none" ? new HashSet<string>()
            : settings.Rules.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
        foreach (var sweep in settings.Sweeps)
        {
            var state = await SweepJournal.Read(settings.DataDir, sweep);
            points.AddRange(Point.All(sweep, state, rules));
        }
        if (points.Count == 0) throw new ArgumentException($"No completed trials in {string.Join(", ", settings.Sweeps)} yet.");
        if (points.Select(p => p.Metric).Distinct().Count() > 1)
            throw new ArgumentException($"{string.Join(", ", settings.Sweeps)} were scored on different metrics ({string.Join(", ", points.Select(p => p.Metric).Distinct())}); plot them separately.");
        Draw(points, settings.Title ?? string.Join(" + ", settings.Sweeps), settings.Out);
        var front = ParetoFront(points);
        Console.WriteLine($"Wrote {settings.Out}: {points.Count} trials, {front.Count} on the Pareto front:");
        foreach (var p in front) Console.WriteLine($"  {p.Trial,-22} retention {p.Retention:0.000}  acquisition {p.Acquisition:0.000}");
        return 0;
    }

    /// <summary>The points no other point beats on both retention and acquisition (by the metric's direction), by retention ascending.</summary>
    internal static IReadOnlyList<Point> ParetoFront(IReadOnlyList<Point> points)
        => ScoreMetric.ParetoFront(points, points.Count > 0 ? points[0].Metric : null, p => p.Retention, p => p.Acquisition);

    internal static void Draw(IReadOnlyList<Point> points, string title, string path)
    {
        var plot = new ScottPlot.Plot();
        bool lower = ScoreMetric.LowerIsBetter(points[0].Metric);
        double baseOld = lower ? points.Min(p => p.BaseOld) : points.Max(p => p.BaseOld);
        // Perplexities span orders of magnitude (a forgetting method's old-text perplexity is 10-40 times the base's,
        // a routed one's within a few percent): both axes are then drawn on a log scale, as log10 of the values.
        Func<double, double> axis = lower ? Math.Log10 : v => v;
        if (!lower)
        {
            var goal = plot.Add.Rectangle(baseOld - 0.02, 1.02, 0.90, 1.02);
            goal.FillStyle.Color = ScottPlot.Colors.Green.WithAlpha(0.12);
            goal.LineStyle.Width = 0;
            goal.LegendText = "goal: forgetting ≤ 0.02, acquisition ≥ 0.90";
        }
        else
        {
            var bound = plot.Add.VerticalLine(axis(baseOld * 1.02));
            bound.Color = ScottPlot.Colors.Green;
            bound.LinePattern = ScottPlot.LinePattern.Dotted;
            bound.LegendText = "goal: old text within 2% of the base";
        }
        var palette = new ScottPlot.Palettes.Category10();
        var methods = points.Select(p => p.Method).Distinct().Order(StringComparer.Ordinal).ToList();
        foreach (var group in points.GroupBy(p => (p.Method, Routed: p.Rule is not null)).OrderBy(g => g.Key.Method, StringComparer.Ordinal).ThenBy(g => g.Key.Routed))
        {
            var scatter = plot.Add.Scatter(group.Select(p => axis(p.Retention)).ToArray(), group.Select(p => axis(p.Acquisition)).ToArray());
            scatter.LineWidth = 0;
            scatter.MarkerSize = group.Key.Routed ? 10 : 9;
            scatter.MarkerShape = group.Key.Routed ? ScottPlot.MarkerShape.FilledTriangleUp : ScottPlot.MarkerShape.FilledCircle;
            scatter.Color = palette.GetColor(methods.IndexOf(group.Key.Method));
            scatter.LegendText = group.Key.Routed ? $"{group.Key.Method}, routed" : group.Key.Method;
        }
        var front = ParetoFront(points);
        if (front.Count > 1)
        {
            var line = plot.Add.Scatter(front.Select(p => axis(p.Retention)).ToArray(), front.Select(p => axis(p.Acquisition)).ToArray());
            line.MarkerSize = 0;
            line.LineWidth = 1.5f;
            line.LinePattern = ScottPlot.LinePattern.Dashed;
            line.Color = ScottPlot.Colors.Gray;
            line.LegendText = "Pareto front";
        }
        plot.Title(title);
        if (lower)
        {
            // Lower is better, so both axes run from high to low and better is still up and to the right.
            plot.XLabel($"retention (perplexity of the old text, log scale, lower is better; base {baseOld:0.00})");
            plot.YLabel("acquisition (perplexity of the new text, log scale)");
            foreach (ScottPlot.IAxis edge in new ScottPlot.IAxis[] { plot.Axes.Bottom, plot.Axes.Left })
            {
                var ticks = new ScottPlot.TickGenerators.NumericAutomatic
                {
                    LabelFormatter = v => Math.Pow(10, v).ToString(Math.Pow(10, v) < 100 ? "0.#" : "#,0", System.Globalization.CultureInfo.InvariantCulture),
                    MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
                    IntegerTicksOnly = false,
                };
                edge.TickGenerator = ticks;
            }
            plot.Axes.AutoScale();
            var limits = plot.Axes.GetLimits();
            plot.Axes.SetLimits(limits.Right, limits.Left, limits.Top, limits.Bottom);
        }
        else
        {
            plot.XLabel($"retention (recall of the old people; base {baseOld:0.000})");
            plot.YLabel("acquisition (recall of the new people)");
            plot.Axes.SetLimits(-0.02, 1.02, -0.02, 1.02);
        }
        plot.ShowLegend(lower ? ScottPlot.Alignment.LowerLeft : ScottPlot.Alignment.MiddleRight);   // where the points are not
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        plot.SavePng(path, 900, 650);
    }
}
