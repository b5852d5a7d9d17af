using System.Globalization;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Model.Experiments;
using Spectre.Console;

namespace Scale.Actors.Reports;

/// <summary>What `scale run` shows while a sweep runs: base preparation, a line or bar per running trial, the sweep's events.</summary>
internal interface ISweepView
{
    void Base(ExperimentProgress progress);
    void Trial(TrialProgress progress);
    void Notice(TrialNotice notice);
    void Event(ISweepEvent @event);
    void Overall(int done, int total);
}

/// <summary>Plain lines, for logs and redirected output: a line per event and about ten per trial.</summary>
internal sealed class PlainSweepView(TextWriter output) : ISweepView
{
    private static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    public void Base(ExperimentProgress p)
    {
        if (p.Note is not null) output.WriteLine($"[{p.Phase}] {p.Note}");
        else if (p.TotalSteps > 0 && (p.Step % Math.Max(1, p.TotalSteps / 10) == 0 || p.Step == p.TotalSteps))
            output.WriteLine($"[{p.Phase}] {p.Method} step {p.Step}/{p.TotalSteps} loss {F(p.Loss, "0.000")} {F(p.TokensPerSecond, "0")} tok/s");
    }

    public void Trial(TrialProgress p)
    {
        if (p.Step % Math.Max(1, p.TotalSteps / 10) == 0 || p.Step == p.TotalSteps)
            output.WriteLine($"trial {p.TrialId} step {p.Step}/{p.TotalSteps} loss {F(p.Loss, "0.000")} {F(p.TokensPerSecond, "0")} tok/s, {F(p.EtaSeconds, "0")} s left");
    }

    public void Notice(TrialNotice n) => output.WriteLine($"trial {n.TrialId}: {n.Message}");

    public void Event(ISweepEvent e)
    {
        switch (e)
        {
            case TrialStarted s: output.WriteLine($"trial {s.TrialId} started (attempt {s.Attempt})"); break;
            case TrialCheckpointed c: output.WriteLine($"trial {c.TrialId} checkpoint at step {c.Step}"); break;
            case TrialCompleted c:
                output.WriteLine($"trial {c.TrialId} completed: retention {F(c.Metrics.Scores.Retention, "0.000")}, acquisition {F(c.Metrics.Scores.Acquisition, "0.000")}");
                break;
            case TrialRetrying r: output.WriteLine($"trial {r.TrialId} attempt {r.Attempt} failed, retrying from its last checkpoint: {r.Reason}"); break;
            case TrialFailed f: output.WriteLine($"trial {f.TrialId} failed for good after attempt {f.Attempt}: {f.Reason}"); break;
            case TrialPaused p: output.WriteLine($"trial {p.TrialId} paused by an {p.Reason}; it resumes from its last checkpoint after {p.RetryAt:HH:mm:ss} UTC, its retry budget untouched"); break;
            case TrialRequeued q: output.WriteLine($"trial {q.TrialId} re-queued (its trainer {q.TrainerId} is gone)"); break;
            case TrialPromoted p: output.WriteLine($"trial {p.TrialId} promoted at step {p.Decision.Step}: {F(p.Decision.Score, "0.000")} against the rung's cutoff {F(p.Decision.Cutoff, "0.000")}"); break;
            case TrialStopped s: output.WriteLine($"trial {s.TrialId} stopped at step {s.Decision.Step}: {F(s.Decision.Score, "0.000")} against the rung's cutoff {F(s.Decision.Cutoff, "0.000")}"); break;
        }
        output.Flush();
    }

    public void Overall(int done, int total) => output.WriteLine($"sweep: {done}/{total} trials finished");
}

/// <summary>Live bars (Spectre.Console): one per running trial with step, loss, tokens/s and ETA, and one for the sweep.</summary>
internal sealed class LiveSweepView(ProgressContext context) : ISweepView
{
    private readonly Dictionary<string, ProgressTask> bars = new();
    private ProgressTask? overall;

    private ProgressTask Bar(string key, double max)
    {
        if (!bars.TryGetValue(key, out var bar)) bars[key] = bar = context.AddTask(Markup.Escape(key), maxValue: Math.Max(1, max));
        bar.MaxValue = Math.Max(1, max);
        return bar;
    }

    public void Base(ExperimentProgress p)
    {
        if (p.Note is not null) AnsiConsole.MarkupLine($"[grey]{Markup.Escape(p.Note)}[/]");
        if (p.TotalSteps == 0) return;
        var bar = Bar("base", p.TotalSteps);
        bar.Value = p.Step;
        bar.Description = $"pre-train [blue]base[/] step {p.Step}/{p.TotalSteps} loss {p.Loss:0.000} {p.TokensPerSecond:N0} tok/s";
        if (p.Step >= p.TotalSteps) bar.StopTask();
    }

    public void Trial(TrialProgress p)
    {
        var bar = Bar(p.TrialId, p.TotalSteps);
        bar.Value = p.Step;
        bar.Description = $"[blue]{Markup.Escape(p.TrialId)}[/] step {p.Step}/{p.TotalSteps} loss {p.Loss:0.000} {p.TokensPerSecond:N0} tok/s";
    }

    public void Notice(TrialNotice n) => AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(n.TrialId)}: {Markup.Escape(n.Message)}[/]");

    public void Event(ISweepEvent e)
    {
        switch (e)
        {
            case TrialCompleted c:
                if (bars.TryGetValue(c.TrialId, out var done)) done.StopTask();
                AnsiConsole.MarkupLine($"[green]{Markup.Escape(c.TrialId)}[/] retention {c.Metrics.Scores.Retention:0.000}, acquisition {c.Metrics.Scores.Acquisition:0.000}");
                break;
            case TrialRetrying r:
                AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(r.TrialId)} attempt {r.Attempt} failed, retrying: {Markup.Escape(r.Reason)}[/]");
                break;
            case TrialPaused p:
                AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(p.TrialId)} paused by an {Markup.Escape(p.Reason)}; resumes after {p.RetryAt:HH:mm:ss} UTC (retry budget untouched)[/]");
                break;
            case TrialStopped s:
                if (bars.TryGetValue(s.TrialId, out var stopped)) stopped.StopTask();
                AnsiConsole.MarkupLine($"[grey]{Markup.Escape(s.TrialId)} stopped at step {s.Decision.Step}: {s.Decision.Score:0.000} against the rung's cutoff {s.Decision.Cutoff:0.000}[/]");
                break;
            case TrialFailed f:
                if (bars.TryGetValue(f.TrialId, out var failed)) failed.StopTask();
                AnsiConsole.MarkupLine($"[red]{Markup.Escape(f.TrialId)} failed: {Markup.Escape(f.Reason)}[/]");
                break;
        }
    }

    public void Overall(int done, int total)
    {
        overall ??= context.AddTask("[bold]sweep[/]", maxValue: Math.Max(1, total));
        overall.Value = done;
        overall.Description = $"[bold]sweep[/] {done}/{total} trials";
    }
}

/// <summary>Reports on the calling thread, in order (Progress&lt;T&gt; would post to the thread pool).</summary>
internal sealed class SynchronousProgress(Action<ExperimentProgress> report) : IProgress<ExperimentProgress>
{
    public void Report(ExperimentProgress value) => report(value);
}

/// <summary><see cref="SynchronousProgress"/> for any report type.</summary>
internal sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
