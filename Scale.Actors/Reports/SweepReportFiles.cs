using System.Globalization;
using System.Text;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;

namespace Scale.Actors.Reports;

/// <summary>
/// The files of `scale report`: PNG plots (ScottPlot) — loss curves from the trials' logs, scores during training,
/// retention against acquisition with the Pareto front, recall per attribute — and report.md with the results table.
/// </summary>
internal static class SweepReportFiles
{
    /// <summary>Writes the report of <paramref name="sweep"/> into <paramref name="output"/>: the images written, the points in pareto.png and the loss curves drawn.</summary>
    public static (IReadOnlyList<string> Written, int Points, int Curves) Write(string dataDirectory, string sweep, SweepState state, string output)
    {
        var trials = state.Order.Select(id => state.Trials[id]).ToList();
        var written = new List<string>();

        var curves = trials.Select(t => (t.Spec.Id, Curve: TrialLog.LossCurve(Path.Combine(
            SweepPaths.SweepDirectory(dataDirectory, sweep), "trials", t.Spec.Id)))).Where(c => c.Curve.Count > 0).ToList();
        var labels = SweepReport.Rows(state).ToDictionary(r => r.Trial, r => r.Label);
        if (curves.Count > 0)
        {
            var plot = new ScottPlot.Plot();
            foreach (var (id, curve) in curves)
            {
                var line = plot.Add.Scatter(curve.Select(c => (double)c.Step).ToArray(), curve.Select(c => c.Loss).ToArray());
                line.MarkerSize = 0;
                line.LegendText = labels.GetValueOrDefault(id, id);
            }
            plot.Title($"{sweep}: training loss");
            plot.XLabel("step");
            plot.YLabel("loss");
            plot.ShowLegend(ScottPlot.Alignment.UpperRight);
            Save(plot, output, "loss.png", written);
        }

        // Scores against step (the sweep's evaluate-every): acquisition solid, retention dashed, one colour per trial.
        var withCurves = trials.Where(t => t.Curve.Count > 0).ToList();
        if (withCurves.Count > 0)
        {
            // Retention alone against step, one line per trial (the paper's biography figure: Task-0 accuracy per method).
            var metric = withCurves[0].Metrics?.Metric;
            var sides = Scale.Model.Experiments.ScoreMetric.Sides(metric);
            foreach (var (name, side, select) in new (string, string, Func<ScorePoint, double>)[]
                     { ("retention.png", sides.Retention, p => p.Scores.Retention), ("acquisition.png", sides.Acquisition, p => p.Scores.Acquisition) })
            {
                var single = new ScottPlot.Plot();
                var colours = new ScottPlot.Palettes.Category10();
                foreach (var (t, i) in withCurves.Select((t, i) => (t, i)))
                {
                    var line = single.Add.Scatter(t.Curve.Select(p => (double)p.Step).ToArray(), t.Curve.Select(select).ToArray());
                    line.Color = colours.GetColor(i);
                    line.LegendText = labels.GetValueOrDefault(t.Spec.Id, t.Spec.Id);
                }
                if (name == "retention.png" && withCurves.Select(t => t.Metrics?.BaseOld).FirstOrDefault(b => b is not null) is { } baseOld)
                {
                    var reference = single.Add.HorizontalLine(baseOld);
                    reference.LinePattern = ScottPlot.LinePattern.Dashed;
                    reference.Color = ScottPlot.Colors.Gray;
                    reference.LegendText = "the frozen base";
                }
                single.Title($"{sweep}: {side} during training");
                single.XLabel("step");
                single.YLabel(side);
                single.ShowLegend(ScottPlot.Alignment.MiddleRight);
                Save(single, output, name, written);
            }
            var plot = new ScottPlot.Plot();
            var palette = new ScottPlot.Palettes.Category10();
            foreach (var (t, i) in withCurves.Select((t, i) => (t, i)))
            {
                var steps = t.Curve.Select(p => (double)p.Step).ToArray();
                var acquisition = plot.Add.Scatter(steps, t.Curve.Select(p => p.Scores.Acquisition).ToArray());
                acquisition.Color = palette.GetColor(i);
                acquisition.LegendText = $"{labels.GetValueOrDefault(t.Spec.Id, t.Spec.Id)} acquisition";
                var retention = plot.Add.Scatter(steps, t.Curve.Select(p => p.Scores.Retention).ToArray());
                retention.Color = palette.GetColor(i);
                retention.LinePattern = ScottPlot.LinePattern.Dashed;
                retention.LegendText = $"{labels.GetValueOrDefault(t.Spec.Id, t.Spec.Id)} retention";
            }
            plot.Title($"{sweep}: scores during training");
            plot.XLabel("step");
            plot.YLabel(Scale.Model.Experiments.ScoreMetric.Describe(withCurves[0].Metrics?.Metric));
            plot.ShowLegend(ScottPlot.Alignment.MiddleRight);
            Save(plot, output, "scores.png", written);
        }
        var points = ResultPoint.All(sweep, state).ToList();
        if (points.Count > 0)
        {
            ResultPlot.Draw(points, $"{sweep}: retention vs acquisition", Path.Combine(output, "pareto.png"));
            written.Add("pareto.png");
        }
        foreach (var (side, select) in new (string, Func<TrialMetrics, IReadOnlyDictionary<string, double>?>)[]
                 { ("retention", m => m.RetentionByAttribute), ("acquisition", m => m.AcquisitionByAttribute) })
        {
            var scored = trials.Where(t => t.Metrics is not null && select(t.Metrics) is { Count: > 0 }).ToList();
            if (scored.Count == 0) continue;
            var attributes = scored.SelectMany(t => select(t.Metrics!)!.Keys).Distinct().ToList();
            var plot = new ScottPlot.Plot();
            double width = 0.8 / scored.Count;
            var palette = new ScottPlot.Palettes.Category10();
            for (int i = 0; i < scored.Count; i++)
            {
                var values = select(scored[i].Metrics!)!;
                var bars = plot.Add.Bars(attributes.Select((_, a) => a + (i - (scored.Count - 1) / 2.0) * width).ToArray(),
                                         attributes.Select(a => values.GetValueOrDefault(a)).ToArray());
                foreach (var bar in bars.Bars) bar.Size = width * 0.9;
                bars.Color = palette.GetColor(i);
                bars.LegendText = scored[i].Spec.Id;
            }
            plot.Axes.Bottom.SetTicks(attributes.Select((_, a) => (double)a).ToArray(), attributes.ToArray());
            plot.Axes.SetLimitsY(0, 1.05);
            plot.Title($"{sweep}: {side} (recall) per attribute");
            plot.ShowLegend(ScottPlot.Alignment.UpperRight);
            Save(plot, output, $"{side}-by-attribute.png", written);
        }

        // The task suites: each task's headline metric per row, with its standard error as the error bar.
        var rows = SweepReport.Rows(state).Where(r => r.Tasks is { Count: > 0 }).ToList();
        var tasks = SweepReport.TaskColumns(rows);
        if (tasks.Count > 0)
        {
            var plot = new ScottPlot.Plot();
            double width = 0.8 / tasks.Count;
            var palette = new ScottPlot.Palettes.Category10();
            for (int k = 0; k < tasks.Count; k++)
            {
                var bars = new List<ScottPlot.Bar>();
                for (int i = 0; i < rows.Count; i++)
                {
                    if (Scale.Model.Evaluation.TaskResult.In(rows[i].Tasks, tasks[k]) is not { } task) continue;
                    bars.Add(new ScottPlot.Bar
                    {
                        Position = i + (k - (tasks.Count - 1) / 2.0) * width, Value = task.Headline.Value, Size = width * 0.9,
                        Error = task.Headline.StandardError ?? 0, FillColor = palette.GetColor(k),
                    });
                }
                var series = plot.Add.Bars(bars);
                series.LegendText = tasks[k];
            }
            plot.Axes.Bottom.SetTicks(rows.Select((_, i) => (double)i).ToArray(), rows.Select(r => r.Label).ToArray());
            plot.Axes.Bottom.TickLabelStyle.Rotation = 45;
            plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleLeft;
            plot.Axes.Bottom.MinimumSize = 160;
            plot.Axes.SetLimitsY(0, 1.05);
            plot.Title($"{sweep}: task suites (± standard error)");
            plot.ShowLegend(ScottPlot.Alignment.UpperRight);
            Save(plot, output, "tasks.png", written);
        }

        File.WriteAllText(Path.Combine(output, "report.md"), Markdown(sweep, state, written));
        return (written, points.Count, curves.Count);
    }

    private static void Save(ScottPlot.Plot plot, string directory, string name, List<string> written)
    {
        plot.SavePng(Path.Combine(directory, name), 1000, 650);
        written.Add(name);
    }

    /// <summary>Text in a Markdown table's cell: a '|' would end the cell.</summary>
    private static string Cell(string text) => text.Replace("|", "\\|");

    private static string Markdown(string sweep, SweepState state, IReadOnlyList<string> images)
    {
        static string N(double? v) => v?.ToString("0.000", CultureInfo.InvariantCulture) ?? "—";
        var md = new StringBuilder($"# Sweep {sweep}\n\n{SweepReport.Counts(state)}.\n\n");
        md.AppendLine("| trial | method | params | state | retention | acquisition | forgetting | attempts | tokens/s |");
        md.AppendLine("|---|---|---|---|---:|---:|---:|---:|---:|");
        foreach (var r in SweepReport.Rows(state))
            md.AppendLine($"| {r.Trial} | {r.Method} | {SweepReport.Params(r.Params)} | {r.State} | {N(r.Retention)} | {N(r.Acquisition)} | {N(r.Forgetting)} | {r.Attempts} | {(r.TokensPerSecond is > 0 ? r.TokensPerSecond.Value.ToString("N0", CultureInfo.InvariantCulture) : "—")} |");
        md.AppendLine();
        var scored = SweepReport.Rows(state).Where(r => r.Tasks is { Count: > 0 }).ToList();
        if (scored.Count > 0)
        {
            // Every metric of every task, with its standard error, as lm-evaluation-harness reports them.
            md.AppendLine("## Task suites\n");
            md.AppendLine("| trial | side | task | items | metric | value | stderr |");
            md.AppendLine("|---|---|---|---:|---|---:|---:|");
            foreach (var r in scored)
                foreach (var task in r.Tasks!)
                    foreach (var m in task.Metrics)
                        md.AppendLine($"| {Cell(r.Label)} | {task.Side} | {Cell(task.Task)} | {task.Items} | {m.Name} | {m.Value.ToString("0.0000", CultureInfo.InvariantCulture)} | " +
                                      $"{m.StandardError?.ToString("0.0000", CultureInfo.InvariantCulture) ?? "—"} |");
            md.AppendLine();
        }
        foreach (var image in images) md.AppendLine($"![{image}]({image})\n");
        return md.ToString();
    }
}
