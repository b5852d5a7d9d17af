using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Scale.Actors.Sweeps;
using Scale.Model.Experiments;
using Spectre.Console;

namespace Scale.Actors.Reports;

/// <summary>One trial in `scale results`.</summary>
internal sealed record TrialRow
{
    [JsonPropertyName("trial")] public required string Trial { get; init; }
    [JsonPropertyName("method")] public required string Method { get; init; }
    [JsonPropertyName("params")] public required IReadOnlyDictionary<string, string> Params { get; init; }
    [JsonPropertyName("state")] public required string State { get; init; }
    [JsonPropertyName("retention")] public double? Retention { get; init; }
    [JsonPropertyName("acquisition")] public double? Acquisition { get; init; }
    [JsonPropertyName("forgetting")] public double? Forgetting { get; init; }
    [JsonPropertyName("attempts")] public int Attempts { get; init; }
    [JsonPropertyName("final_loss")] public double? FinalLoss { get; init; }
    [JsonPropertyName("trainable_params")] public long? TrainableParams { get; init; }
    [JsonPropertyName("tokens_per_second")] public double? TokensPerSecond { get; init; }
    /// <summary>The matrix products' kernel path the trial trained on (results are bit-identical only on the same path).</summary>
    [JsonPropertyName("kernels")] public string? Kernels { get; init; }
    /// <summary>fp32, or bf16 (mixed precision).</summary>
    [JsonPropertyName("precision")] public string? Precision { get; init; }
    [JsonPropertyName("last_checkpoint_step")] public long? LastCheckpointStep { get; init; }
    [JsonPropertyName("failure")] public string? Failure { get; init; }
    /// <summary>The scores' metric: recall (higher is better) or perplexity (lower is better).</summary>
    [JsonPropertyName("metric")] public string? Metric { get; init; }
    [JsonPropertyName("lower_is_better")] public bool LowerIsBetter => ScoreMetric.LowerIsBetter(Metric);
    /// <summary>For a row of the routing axis: the trained trial whose weights it scores (null for a trained trial).</summary>
    [JsonPropertyName("from")] public string? From { get; init; }
    /// <summary>A novelty-auto rule's threshold in nats, calibrated on the old data (the row's rule, or a Route trial's own).</summary>
    [JsonPropertyName("routing_threshold")] public double? RoutingThreshold { get; init; }
    /// <summary>Parameters the trial holds beyond the shared frozen base.</summary>
    [JsonPropertyName("resident_params")] public long? ResidentParams { get; init; }
    /// <summary>For a routed row: blocks run per token for both heads, in passes of the base's blocks, and the seconds its scoring took.</summary>
    [JsonPropertyName("block_passes")] public double? BlockPasses { get; init; }
    [JsonPropertyName("evaluation_seconds")] public double? EvaluationSeconds { get; init; }
    /// <summary>The experiment's task suites on the trial's final weights (routed rows: through the routed model), each metric with its standard error.</summary>
    [JsonPropertyName("tasks"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]   // absent without suites: earlier output reads as it did
    public IReadOnlyList<Scale.Model.Evaluation.TaskResult>? Tasks { get; init; }
    /// <summary>Scores during training (the sweep's evaluate-every), by step.</summary>
    [JsonPropertyName("curve")] public IReadOnlyList<CurvePoint>? Curve { get; init; }
    /// <summary>The step of the curve's best point (most acquisition less forgetting, by the metric's direction); null without a curve.</summary>
    [JsonPropertyName("best_step")] public long? BestStep { get; init; }
    /// <summary>The step the sweep's scheduler stopped the trial at (null: not stopped), and its decisions at each rung.</summary>
    [JsonPropertyName("stopped_at")] public long? StoppedAt { get; init; }
    [JsonPropertyName("rungs")] public IReadOnlyList<RungDecision>? Rungs { get; init; }
    /// <summary>The state in words, with where a stopped trial stopped.</summary>
    [JsonIgnore] public string StateText => StoppedAt is { } at ? $"stopped at {at}" : State;

    /// <summary>What the trial is, in words: its method and settings, e.g. "adapt heads_up=2" or "route novelty:4 (adapt heads_up=2)".</summary>
    [JsonPropertyName("label")]
    public string Label
    {
        get
        {
            var settings = string.Join(" ", Params.Where(p => p.Key is not ("routing" or "trained_as")).OrderBy(p => p.Key).Select(p => $"{p.Key}={p.Value}"));
            if (From is null) return settings.Length == 0 ? Method : $"{Method} {settings}";
            var trained = Params.GetValueOrDefault("trained_as", "?") + (settings.Length == 0 ? "" : " " + settings);
            return $"route {Params.GetValueOrDefault("routing", "?")} ({trained})";
        }
    }
}

/// <summary>
/// A point of a trial's scores during training in `scale results` and the operators' API: the journal's
/// <see cref="ScorePoint"/> with its <see cref="Scores"/> written at the top level, as users' scripts and the dashboard read them.
/// </summary>
internal sealed record CurvePoint(long Step, double Retention, double Acquisition, double Forgetting)
{
    public double? RetentionFirstToken { get; init; }
    public double? AcquisitionFirstToken { get; init; }
    public long? TotalSteps { get; init; }
    public string? Metric { get; init; }
    /// <summary>The task suites at this step (only when the experiment's suites ask for every evaluation).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<Scale.Model.Evaluation.TaskResult>? Tasks { get; init; }

    public static CurvePoint Of(ScorePoint p) => new(p.Step, p.Scores.Retention, p.Scores.Acquisition, p.Scores.Forgetting)
    {
        RetentionFirstToken = p.Scores.RetentionFirstToken, AcquisitionFirstToken = p.Scores.AcquisitionFirstToken, TotalSteps = p.TotalSteps, Metric = p.Metric,
        Tasks = p.Scores.Tasks,
    };
}

/// <summary>A sweep's trials as a table, CSV or JSON.</summary>
internal static class SweepReport
{
    public static readonly string[] Formats = ["table", "csv", "json"];

    /// <summary>Every trial, each followed by its rows under the sweep's routing rules (labelled "{trial}@{rule}", from that trial).</summary>
    public static IReadOnlyList<TrialRow> Rows(SweepState state) => state.Order.Select(id => state.Trials[id])
        .SelectMany(t => new[] { Row(t) }.Concat(RoutedRows(t))).ToList();

    private static IEnumerable<TrialRow> RoutedRows(TrialState t)
        => (t.Metrics?.Routed ?? new Dictionary<string, RoutedScores>()).Select(r => new TrialRow
        {
            Trial = $"{t.Spec.Id}@{r.Key}", Method = "route",
            Params = new Dictionary<string, string>(t.Spec.Parameters) { ["routing"] = r.Key, ["trained_as"] = t.Spec.Method },
            State = "completed", Retention = r.Value.Scores.Retention, Acquisition = r.Value.Scores.Acquisition, Forgetting = r.Value.Scores.Forgetting,
            Attempts = t.Attempt, Metric = t.Metrics!.Metric ?? ScoreMetric.Recall, From = t.Spec.Id,
            RoutingThreshold = r.Value.Threshold, ResidentParams = r.Value.ResidentParameters, BlockPasses = r.Value.BlockPasses,
            EvaluationSeconds = r.Value.EvaluationSeconds, Tasks = r.Value.Scores.Tasks,
        });

    private static TrialRow Row(TrialState t) => Row(t, t.PausedAt(DateTime.UtcNow));

    /// <summary>A paused trial (waiting out an infrastructure fault's backoff) reads "paused", with the fault and when it resumes.</summary>
    private static TrialRow Row(TrialState t, bool paused) => new()
    {
        Trial = t.Spec.Id, Method = t.Spec.Method, Params = t.Spec.Parameters, State = paused ? "paused" : t.Status.ToString().ToLowerInvariant(),
        Retention = t.Metrics?.Scores.Retention, Acquisition = t.Metrics?.Scores.Acquisition, Forgetting = t.Metrics?.Scores.Forgetting,
        Attempts = t.Attempt, FinalLoss = t.Metrics?.FinalLoss, TrainableParams = t.Metrics?.TrainableParameters,
        TokensPerSecond = t.Metrics?.TokensPerSecond, Kernels = t.Metrics?.Kernels, Precision = t.Metrics?.Precision, RoutingThreshold = t.Metrics?.RoutingThreshold,
        ResidentParams = t.Metrics?.ResidentParameters, LastCheckpointStep = t.LastCheckpoint?.Step,
        Failure = t.Status == TrialStatus.Failed ? t.FailureReason
                  : paused ? $"{t.PauseReason}; resumes after {t.RetryAt:yyyy-MM-dd HH:mm:ss} UTC" : null,
        Metric = t.Metrics?.Metric ?? (t.Metrics is null ? null : ScoreMetric.Recall), Tasks = t.Metrics?.Scores.Tasks,
        Curve = t.Curve.Count == 0 ? null : t.Curve.Select(CurvePoint.Of).ToList(),
        StoppedAt = t.StoppedAt, Rungs = t.Decisions.Count == 0 ? null : t.Decisions,
        BestStep = t.Curve.Count == 0 ? null
            : t.Curve.MaxBy(p => ScoreMetric.Gain(t.Metrics?.Metric, p.Scores.Acquisition, 0) - p.Scores.Forgetting)!.Step,
    };

    /// <summary>The metric a sweep's trials were scored on (recall when none has finished: nothing is ranked then).</summary>
    public static string MetricOf(SweepState state)
        => state.Trials.Values.Select(t => t.Metrics?.Metric).FirstOrDefault(m => m is not null) ?? ScoreMetric.Recall;

    /// <summary>
    /// The JSON of `results --format json` and of the operators' API: rows name their fields themselves, and what they
    /// carry (a curve's points, the scheduler's rungs) is written in the same snake case ("step", "total_steps").
    /// </summary>
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    public static string Json(SweepState state) => JsonSerializer.Serialize(Rows(state), JsonOptions);

    /// <summary>The tasks the rows were scored on, by column name ("old bio-choice acc"), in the order they first appear.</summary>
    public static IReadOnlyList<string> TaskColumns(IEnumerable<TrialRow> rows) => Scale.Model.Evaluation.TaskResult.Columns(rows.Select(r => r.Tasks));

    /// <summary>The row's <paramref name="column"/> task as "value ± stderr" (— when it has none).</summary>
    public static string TaskCell(TrialRow row, string column) => Scale.Model.Evaluation.TaskResult.In(row.Tasks, column)?.Text ?? "—";

    /// <summary>
    /// A plain-text table for the end of a run (readable in a log or a redirected file): each trial by what it is, its scores
    /// to three decimals, and where its numbers come from.
    /// </summary>
    public static string Text(SweepState state)
    {
        static string N(double? v) => v?.ToString("0.000", CultureInfo.InvariantCulture) ?? "—";
        var rows = Rows(state);
        var tasks = TaskColumns(rows);
        string[] header = ["trial", "retention", "acquisition", "forgetting", .. tasks, "state", "id"];
        var cells = rows.Select(r => (string[])[r.Label, N(r.Retention), N(r.Acquisition), N(r.Forgetting), .. tasks.Select(t => TaskCell(r, t)), r.StateText, r.Trial]).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, cells.Count == 0 ? 0 : cells.Max(c => c[i].Length))).ToArray();
        var text = new StringBuilder();
        void Line(string[] c) => text.AppendLine(string.Join("  ", c.Select((v, i) => i >= 1 && i <= 3 + tasks.Count ? v.PadLeft(widths[i]) : v.PadRight(widths[i]))).TrimEnd());
        text.AppendLine($"sweep {state.SweepId}: {ScoreMetric.Describe(MetricOf(state))}");
        Line(header);
        Line(widths.Select(w => new string('-', w)).ToArray());
        foreach (var c in cells) Line(c);
        return text.ToString();
    }

    public static string Csv(SweepState state)
    {
        static string Q(string s) => s.IndexOfAny([',', '"', '\n']) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;
        static string N(double? v) => v?.ToString("R", CultureInfo.InvariantCulture) ?? "";
        var rows = Rows(state);
        var tasks = TaskColumns(rows);
        // Each task's headline metric and its standard error, two columns each ("old bio-choice acc", "old bio-choice acc stderr").
        var csv = new StringBuilder("trial,method,params,state,retention,acquisition,forgetting,attempts,final_loss,trainable_params,tokens_per_second,failure"
                                    + string.Concat(tasks.Select(t => $",{Q(t)},{Q(t + " stderr")}")) + "\n");
        foreach (var r in rows)
            csv.AppendLine(string.Join(",", [Q(r.Trial), Q(r.Method), Q(Params(r.Params)), r.State, N(r.Retention), N(r.Acquisition), N(r.Forgetting),
                                       r.Attempts.ToString(CultureInfo.InvariantCulture), N(r.FinalLoss),
                                       r.TrainableParams?.ToString(CultureInfo.InvariantCulture) ?? "", N(r.TokensPerSecond), Q(r.Failure ?? ""),
                                       .. tasks.SelectMany(t => Scale.Model.Evaluation.TaskResult.In(r.Tasks, t) is { } x
                                           ? [N(x.Headline.Value), N(x.Headline.StandardError)]
                                           : new[] { "", "" })]));
        return csv.ToString();
    }

    public static Table Table(SweepState state)
    {
        var rows = Rows(state);
        var tasks = TaskColumns(rows);
        var table = new Table().Title($"sweep {Markup.Escape(state.SweepId ?? "")}: {ScoreMetric.Describe(MetricOf(state))}")
            .AddColumns(["trial", "id", "state", "retention", "acquisition", "forgetting", .. tasks.Select(Markup.Escape), "best step", "attempts", "tokens/s"]);
        foreach (var r in rows)
            table.AddRow([Markup.Escape(r.Label), Markup.Escape(r.Trial),
                          r.State == "failed" ? $"[red]failed[/]" : r.StateText,
                          r.Retention?.ToString("0.000") ?? "—", r.Acquisition?.ToString("0.000") ?? "—", r.Forgetting?.ToString("0.000") ?? "—",
                          .. tasks.Select(t => TaskCell(r, t)),
                          r.BestStep?.ToString() ?? "—", r.Attempts.ToString(), r.TokensPerSecond is > 0 ? r.TokensPerSecond.Value.ToString("N0") : "—"]);
        return table;
    }

    /// <summary>
    /// The selection rule, fixed before results are seen: among completed trials with forgetting ≤ <paramref name="maxForgetting"/>,
    /// the best acquisition; when none qualifies, the best acquisition less forgetting. "Best" follows the metric: the highest
    /// recall, the lowest perplexity (forgetting is already "how much worse than the base" either way). Ties go to sweep order.
    /// </summary>
    public static (TrialRow? Best, string Rule) Best(SweepState state, double maxForgetting)
    {
        var metric = MetricOf(state);
        bool lower = ScoreMetric.LowerIsBetter(metric);
        double Better(double value) => lower ? -value : value;   // larger is better
        var done = Rows(state).Where(r => r.State == "completed" && r.Acquisition is not null && r.Forgetting is not null).ToList();
        var within = done.Where(r => r.Forgetting <= maxForgetting).ToList();
        string best = lower ? "lowest" : "highest";
        return within.Count > 0
            ? (within.MaxBy(r => Better(r.Acquisition!.Value)), $"{best} acquisition with forgetting ≤ {maxForgetting} ({metric})")
            : (done.MaxBy(r => Better(r.Acquisition!.Value) - r.Forgetting!.Value), $"no trial has forgetting ≤ {maxForgetting}: best acquisition less forgetting ({metric})");
    }

    /// <summary>
    /// Each method of the sweep at its best trade-off (<see cref="TradeOffSelection"/>): a method is its trials' label without the
    /// learning rate (so its rates are searched together), a routed row's rule and trained method included; its points are every
    /// completed trial's scores during training and final scores. The base is the frozen trial's (or a curve's first point).
    /// </summary>
    public static IReadOnlyList<TradeOffChoice> TradeOffs(SweepState state, double bound)
    {
        var metric = MetricOf(state);
        var rows = Rows(state).Where(r => r.State == "completed" && r.Retention is not null && r.Acquisition is not null).ToList();
        var baseOld = rows.Select(r => state.Trials.GetValueOrDefault(r.From ?? r.Trial)?.Metrics?.BaseOld).FirstOrDefault(b => b is not null)
                      ?? throw new ArgumentException($"Sweep '{state.SweepId}' records no base score (a journal from before it was kept).");
        double? baseNew = rows.FirstOrDefault(r => r.Method == "frozen")?.Acquisition
                          ?? rows.SelectMany(r => r.Curve ?? []).FirstOrDefault(p => p.Step == 0)?.Acquisition;
        if (baseNew is null) throw new ArgumentException($"Sweep '{state.SweepId}' has no frozen trial and no score before training: nothing tells the base's acquisition.");
        static string Group(TrialRow r) => System.Text.RegularExpressions.Regex.Replace(r.Label, @" lr=[^\s)]+", "");
        var points = rows.Where(r => r.Method != "frozen").SelectMany(r =>
            (r.Curve ?? []).Where(p => p.Step > 0).Select(p => new TradeOffPoint(Group(r), r.Trial, p.Step, p.Retention, p.Acquisition, p.Forgetting))
                .Append(new TradeOffPoint(Group(r), r.Trial, null, r.Retention!.Value, r.Acquisition!.Value, r.Forgetting!.Value)));
        return TradeOffSelection.Choose(points, metric, bound, baseOld, baseNew.Value);
    }

    public static string Params(IReadOnlyDictionary<string, string> p) => string.Join(" ", p.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}"));

    public static string Counts(IReadOnlyCollection<TrialRow> trials)
    {
        int Count(string s) => trials.Count(t => t.State == s);
        return $"{trials.Count} trials: {Count("completed")} completed, " + (Count("stopped") > 0 ? $"{Count("stopped")} stopped early, " : "") +
               $"{Count("running")} running, {Count("pending")} pending, " +
               (Count("paused") > 0 ? $"{Count("paused")} paused by infrastructure faults, " : "") + $"{Count("failed")} failed";
    }

    public static string Counts(SweepState state) => Counts(Rows(state).Where(r => r.From is null).ToList());
}
