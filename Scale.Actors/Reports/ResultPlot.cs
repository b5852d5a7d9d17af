using Scale.Actors.Sweeps;
using Scale.Model.Experiments;

namespace Scale.Actors.Reports;

/// <summary>A completed trial (or one of its routed rows) as a point of retention against acquisition.</summary>
internal sealed record ResultPoint(string Sweep, string Trial, string Method, double Retention, double Acquisition, double BaseOld)
{
    /// <summary>The scores' metric (recall or perplexity), which says which way is better.</summary>
    public string Metric { get; init; } = ScoreMetric.Recall;

    /// <summary>The routing rule of a routed row (its <see cref="Method"/> is the trained method's); null for a trained trial's own scores.</summary>
    public string? Rule { get; init; }

    /// <summary>A completed trial's point; the base score comes with its metrics (older journals: from retention and forgetting).</summary>
    public static ResultPoint Of(string sweep, TrialState trial)
    {
        var m = trial.Metrics!;
        var s = m.Scores;
        double baseOld = m.BaseOld ?? (m.LowerIsBetter ? s.Retention - s.Forgetting : s.Retention + s.Forgetting);
        return new ResultPoint(sweep, trial.Spec.Id, trial.Spec.Method, s.Retention, s.Acquisition, baseOld) { Metric = m.Metric ?? ScoreMetric.Recall };
    }

    /// <summary>
    /// Every completed trial of a sweep, and each of its rows under the sweep's routing rules ("{trial}@{rule}", with the
    /// trained method and the rule), of the rules in <paramref name="rules"/> when it is given.
    /// </summary>
    public static IEnumerable<ResultPoint> All(string sweep, SweepState state, IReadOnlySet<string>? rules = null)
        => state.Order.Select(id => state.Trials[id]).Where(t => t.Metrics is not null).SelectMany(t =>
        {
            var trained = Of(sweep, t);
            return new[] { trained }.Concat((t.Metrics!.Routed ?? new Dictionary<string, RoutedScores>())
                .Where(r => rules is null || rules.Contains(r.Key))
                .Select(r => trained with
                {
                    Trial = $"{t.Spec.Id}@{r.Key}", Rule = r.Key, Retention = r.Value.Scores.Retention, Acquisition = r.Value.Scores.Acquisition,
                }));
        });
}

/// <summary>
/// The plot of `scale plot` and `scale report`: every point coloured by method, each routed row in its trained method's
/// colour as a triangle, the Pareto front of all points, and the goal: on recall, the region of forgetting ≤ 0.02 with
/// acquisition ≥ 0.90; on perplexity (both axes on a log scale, lower is better), the line 2% above the base's old-text perplexity.
/// </summary>
internal static class ResultPlot
{
/// <summary>The points no other point beats on both retention and acquisition (by the metric's direction), by retention ascending.</summary>
internal static IReadOnlyList<ResultPoint> ParetoFront(IReadOnlyList<ResultPoint> points)
    => ScoreMetric.ParetoFront(points, points.Count > 0 ? points[0].Metric : null, p => p.Retention, p => p.Acquisition);

internal static void Draw(IReadOnlyList<ResultPoint> points, string title, string path)
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
