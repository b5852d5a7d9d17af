using System.Globalization;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Reports;

/// <summary>A sweep followed from outside (`scale run --cluster`, `scale status --cluster`): what changed between two states, and each trial's line.</summary>
internal static class SweepChanges
{
    /// <summary>A line for each trial that started, checkpointed, ended or went back to pending between <paramref name="before"/> and <paramref name="now"/>.</summary>
    public static IEnumerable<string> Lines(SweepState? before, SweepState now)
    {
        foreach (var id in now.Order)
        {
            var t = now.Trials[id];
            var was = before?.Trials.GetValueOrDefault(id);
            if (was is not null && was.Status == t.Status && was.Attempt == t.Attempt && was.LastCheckpoint == t.LastCheckpoint) continue;
            string F(double v) => v.ToString("0.000", CultureInfo.InvariantCulture);
            if (t.Status == TrialStatus.Running && (was?.Status != TrialStatus.Running || was.Attempt != t.Attempt))
                yield return $"trial {id} running on {t.Trainer} (attempt {t.Attempt}" + (t.Attempt > 1 && t.LastCheckpoint is { } from ? $", resumes from step {from.Step})" : ")");
            if (t.Status == TrialStatus.Running && t.LastCheckpoint is { } checkpoint && checkpoint != was?.LastCheckpoint && was?.Status == TrialStatus.Running && was.Attempt == t.Attempt)
                yield return $"trial {id} checkpoint at step {checkpoint.Step}";
            if (t.Status == TrialStatus.Completed && was?.Status != TrialStatus.Completed)
                yield return $"trial {id} completed: retention {F(t.Metrics!.Scores.Retention)}, acquisition {F(t.Metrics.Scores.Acquisition)}";
            else if (t.Status == TrialStatus.Stopped && was?.Status != TrialStatus.Stopped)
                yield return $"trial {id} stopped by the scheduler at step {t.StoppedAt}";
            else if (t.Status == TrialStatus.Failed && was?.Status != TrialStatus.Failed)
                yield return $"trial {id} failed: {t.FailureReason}";
            else if (t.Status == TrialStatus.Pending && was?.Status == TrialStatus.Running)
                yield return $"trial {id} pending again (attempt {t.Attempt} ended on {was.Trainer}" + (t.FailureReason is { } why && t.FailedAttempts > was.FailedAttempts ? $": {why})" : ")");
        }
    }

    /// <summary>A trial's line in `scale status --cluster SWEEP`: state, attempt, trainer, checkpoint and why it ended or waits.</summary>
    public static string StatusLine(TrialState t, DateTime now)
        => $"  {t.Spec.Id,-22} {t.Spec.Method,-9} {t.Status.ToString().ToLowerInvariant(),-11} attempt {t.Attempt}" +
           (t.Trainer is { } trainer ? $" on {trainer}" : "") +
           (t.LastCheckpoint is { } c ? $", checkpoint at step {c.Step}" : "") +
           (t.Status == TrialStatus.Failed ? $", {t.FailureReason}" : "") +
           (t.StoppedAt is { } stoppedAt ? $", stopped by the scheduler at step {stoppedAt}" : "") +
           (t.PausedAt(now) ? $", paused by an {t.PauseReason}; resumes after {t.RetryAt:HH:mm:ss} UTC" : "");
}
