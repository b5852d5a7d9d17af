using Microsoft.Extensions.Logging;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Reports;

/// <summary>A sweep's events as structured log lines (the process's log file of a local run).</summary>
internal static class SweepEventLog
{
    public static void Write(ILogger log, ISweepEvent e)
    {
        switch (e)
        {
            case TrialStarted s: log.LogInformation("Trial {trial} started, attempt {attempt}, on {trainer}", s.TrialId, s.Attempt, s.TrainerId); break;
            case TrialCheckpointed c: log.LogInformation("Trial {trial} checkpointed at step {step}", c.TrialId, c.Step); break;
            case TrialCompleted c:
                log.LogInformation("Trial {trial} completed: retention {retention}, acquisition {acquisition}, forgetting {forgetting}",
                                   c.TrialId, c.Metrics.Scores.Retention, c.Metrics.Scores.Acquisition, c.Metrics.Scores.Forgetting);
                break;
            case TrialRetrying r: log.LogWarning("Trial {trial} attempt {attempt} failed, retrying: {reason}", r.TrialId, r.Attempt, r.Reason); break;
            case TrialPaused p: log.LogWarning("Trial {trial} attempt {attempt} paused until {retryAt:u} by an {reason}", p.TrialId, p.Attempt, p.RetryAt, p.Reason); break;
            case TrialFailed f: log.LogError("Trial {trial} failed for good after attempt {attempt}: {reason}", f.TrialId, f.Attempt, f.Reason); break;
            case TrialRequeued q: log.LogWarning("Trial {trial} re-queued: its trainer {trainer} is gone", q.TrialId, q.TrainerId); break;
            case TrialPromoted p:
                log.LogInformation("Trial {trial} promoted at step {step} (rung {rung}): {score} against the cutoff {cutoff}",
                                   p.TrialId, p.Decision.Step, p.Decision.Rung, p.Decision.Score, p.Decision.Cutoff);
                break;
            case TrialStopped s:
                log.LogInformation("Trial {trial} stopped at step {step} (rung {rung}): {score} against the cutoff {cutoff}",
                                   s.TrialId, s.Decision.Step, s.Decision.Rung, s.Decision.Score, s.Decision.Cutoff);
                break;
        }
    }
}
