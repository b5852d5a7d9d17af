using Scale.Model.Experiments;
using Scale.Actors.Sweeps;
using Scale.Actors.Reports;
using Scale.Actors.Persistence;
using Scale.Host.Sweeps;

namespace Scale.Tests.Host;

public class SweepReportTests
{
    private static SweepState Finished(params (string Id, double Retention, double Acquisition, double Forgetting)[] trials)
    {
        var state = SweepState.Replay([new SweepStarted("s", trials.Select(t => new TrialSpec(t.Id, "route", new Dictionary<string, string>())).ToList(), trials.Length, 0)]);
        foreach (var (id, retention, acquisition, forgetting) in trials)
        {
            state = state.Apply(new TrialStarted(id, 1, "w"));
            state = state.Apply(new TrialCompleted(id, 1, new TrialMetrics(new Scores(retention, acquisition, forgetting))));
        }
        return state;
    }

    [Fact]
    public void The_best_trial_is_the_most_acquisitive_within_the_forgetting_bound_else_the_best_difference()
    {
        var withinBound = Finished(("a", 0.9, 0.2, 0.04), ("b", 0.5, 0.9, 0.45), ("c", 0.92, 0.3, 0.02));
        var noneWithin = Finished(("a", 0.5, 0.6, 0.45), ("b", 0.7, 0.5, 0.25), ("c", 0.1, 0.9, 0.85));

        Assert.Equal("c", SweepReport.Best(withinBound, 0.05).Best!.Trial);
        var (best, rule) = SweepReport.Best(noneWithin, 0.05);
        Assert.Equal("b", best!.Trial);   // 0.5 − 0.25 beats 0.6 − 0.45 and 0.9 − 0.85
        Assert.Contains("no trial has forgetting", rule);
        Assert.Null(SweepReport.Best(SweepState.Replay([new SweepStarted("s", [new TrialSpec("x", "route", new Dictionary<string, string>())], 1, 0)]), 0.05).Best);
    }

    [Fact]
    public void A_trials_loss_curve_takes_each_step_from_its_latest_attempt()
    {
        using var dir = new Scale.Tests.Model.TempDirectory();
        var path = dir.Combine("t");
        using (var first = new Scale.Actors.Trainers.TrialLog(path, "s", "t", attempt: 1))
        {
            for (int step = 1; step <= 4; step++) first.Write("step", new { step, loss = 10.0 - step });
            first.Write("checkpoint", new { step = 2, path = "p" });
        }
        using (var second = new Scale.Actors.Trainers.TrialLog(path, "s", "t", attempt: 2))
        {
            second.Write("started", new { resume_step = 2 });
            for (int step = 3; step <= 5; step++) second.Write("step", new { step, loss = 20.0 - step });
        }

        var curve = Scale.Actors.Trainers.TrialLog.LossCurve(path);

        Assert.Equal(new (long, double)[] { (1, 9), (2, 8), (3, 17), (4, 16), (5, 15) }, curve);
    }
}
