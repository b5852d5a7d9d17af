using Scale.Model.Experiments;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

/// <summary>ASHA as the sweep state decides it: pure Decide/Apply, no actors.</summary>
public class AshaTests
{
    private static readonly SchedulerSpec OnAcquisition = new() { Metric = "acquisition", Mode = "max", GraceSteps = 2, Reduction = 3 };   // rungs at 2, 6, 18

    private static (IReadOnlyList<ISweepEvent> Events, SweepState State) Handle(SweepState state, ISweepCommand command)
    {
        var events = state.Decide(command);
        return (events, events.Aggregate(state, (s, e) => s.Apply(e)));
    }

    /// <summary>A sweep with the scheduler and its trials all running (attempt 1), with the events that made it.</summary>
    private static (SweepState State, List<ISweepEvent> Journal) Running(SchedulerSpec scheduler, params string[] trials)
    {
        var journal = new List<ISweepEvent>();
        var state = SweepState.Empty;
        void Do(ISweepCommand command)
        {
            var (events, next) = Handle(state, command);
            journal.AddRange(events);
            state = next;
        }
        Do(new StartSweep("asha", trials.Select(t => new TrialSpec(t, "preserve", new Dictionary<string, string>())).ToList(), trials.Length, 1) { Scheduler = scheduler });
        foreach (var _ in trials) Do(new RequestWork("w", trials.Length));
        return (state, journal);
    }

    private static ReportScores Score(string trial, long step, double acquisition, double forgetting = 0.1, int attempt = 1, long total = 30)
        => new(trial, attempt, new ScorePoint(step, new Scores(0.9, acquisition, forgetting) { AcquisitionFirstToken = acquisition / 2 }) { TotalSteps = total, Metric = "recall" });

    [Fact]
    public void The_first_trial_at_a_rung_is_promoted_and_one_below_the_best_third_is_stopped_there_with_its_scores_of_that_step()
    {
        var (state, _) = Running(OnAcquisition, "a", "b", "c");

        var (first, afterA) = Handle(state, Score("a", 2, 0.5));
        var (second, afterB) = Handle(afterA, Score("b", 2, 0.2));    // cutoff: the ⅔ quantile of [0.2, 0.5] = 0.4
        var (third, afterC) = Handle(afterB, Score("c", 2, 0.9));     // of [0.2, 0.5, 0.9]: 0.5 + ⅓·0.4 = 0.633…

        Assert.Equal(new TrialPromoted("a", 1, new RungDecision(0, 2, 0.5, 0.5, true)), first[1]);
        var stop = Assert.IsType<TrialStopped>(second[1]);
        Assert.Equal((0, 2L, 0.2, false), (stop.Decision.Rung, stop.Decision.Step, stop.Decision.Score, stop.Decision.Promoted));
        Assert.Equal(0.4, stop.Decision.Cutoff, 12);
        Assert.True(Assert.IsType<TrialPromoted>(third[1]).Decision.Cutoff is > 0.633 and < 0.634);

        var b = afterC.Trials["b"];
        Assert.Equal((TrialStatus.Stopped, 2L, (string?)null), (b.Status, b.StoppedAt, b.Trainer));
        Assert.Equal((0.9, 0.2, 0.1, 0.1, "recall"), (b.Metrics!.Scores.Retention, b.Metrics.Scores.Acquisition, b.Metrics.Scores.Forgetting, b.Metrics.Scores.AcquisitionFirstToken, b.Metrics.Metric));
        Assert.Empty(afterC.Decide(Score("b", 3, 0.9)));   // a stopped trial's later reports count for nothing
        Assert.False(afterC.Finished);
    }

    [Fact]
    public void A_rung_is_decided_once_a_resumed_attempt_reaching_it_again_is_not_ranked_twice_and_the_last_step_decides_nothing()
    {
        var (state, _) = Running(OnAcquisition, "a", "b");
        state = Handle(state, Score("a", 2, 0.5)).State;
        state = Handle(state, new ReportFailed("a", 1, "NaN")).State;           // retried: attempt 2 resumes below step 2
        state = Handle(state, new RequestWork("w", 2)).State;

        var again = Handle(state, Score("a", 2, 0.1, attempt: 2)).Events;
        var last = Handle(state, Score("b", 18, 0.0, total: 18)).Events;       // step 18 is a rung, but b's last step
        var between = Handle(state, Score("b", 4, 0.0)).Events;                 // not a rung

        Assert.Equal([typeof(TrialScored)], again.Select(e => e.GetType()));
        Assert.Equal([typeof(TrialScored)], last.Select(e => e.GetType()));
        Assert.Equal([typeof(TrialScored)], between.Select(e => e.GetType()));
    }

    [Fact]
    public void Min_mode_keeps_the_lowest_scores_and_a_sweep_whose_trials_are_completed_or_stopped_is_finished()
    {
        var onForgetting = OnAcquisition with { Metric = "forgetting", Mode = "min" };
        var (state, _) = Running(onForgetting, "a", "b");

        state = Handle(state, Score("a", 2, 0.5, forgetting: 0.05)).State;
        var (events, after) = Handle(state, Score("b", 2, 0.9, forgetting: 0.30));   // more forgetting: stopped
        after = Handle(after, new ReportCompleted("a", 1, new TrialMetrics(new Scores(0.9, 0.5, 0.05)))).State;

        Assert.IsType<TrialStopped>(events[1]);
        Assert.True(after.Finished);
    }

    [Fact]
    public void Replaying_the_journal_or_reading_a_snapshot_reaches_the_same_decisions()
    {
        var (state, journal) = Running(OnAcquisition, "a", "b", "c", "d");
        foreach (var report in new[] { Score("a", 2, 0.5), Score("b", 2, 0.2), Score("c", 2, 0.7), Score("a", 6, 0.6), Score("c", 6, 0.65), Score("d", 2, 0.1) })
        {
            var (events, next) = Handle(state, report);
            journal.AddRange(events);
            state = next;
        }

        var replayed = SweepState.Replay(journal);
        var fromSnapshot = SweepSnapshot.Of(state).ToState();

        Assert.Equal(["a", "c"], state.Order.Where(id => state.Trials[id].Status == TrialStatus.Running));
        Assert.Equal(["b", "d"], state.Order.Where(id => state.Trials[id].Status == TrialStatus.Stopped));
        Assert.Equal(state.Trials["c"].Decisions.Select(d => d.Promoted), [true, true]);
        foreach (var other in new[] { replayed, fromSnapshot })
        {
            Assert.Equal(state.Scheduler, other.Scheduler);
            Assert.All(state.Order, id => Assert.Equal(state.Trials[id], other.Trials[id]));
        }
    }

    [Fact]
    public void Rungs_lie_at_grace_times_powers_of_the_reduction_below_the_last_step()
    {
        var asha = new SchedulerSpec { Metric = "acquisition", Mode = "max", GraceSteps = 25, Reduction = 3 };

        Assert.Equal([25L, 75, 225], asha.RungSteps(300));
        Assert.Equal((0, 1, 2), (asha.RungAt(25)!.Value, asha.RungAt(75)!.Value, asha.RungAt(225)!.Value));
        Assert.Null(asha.RungAt(50));
        Assert.Equal(0.5, asha.Cutoff([0.5]));
    }
}
