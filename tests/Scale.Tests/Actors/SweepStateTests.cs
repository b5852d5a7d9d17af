using Scale.Model.Experiments;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

public class SweepStateTests
{
    private static readonly TrialMetrics Metrics = new(new Scores(0.9, 0.8, 0.05));

    private static TrialSpec Trial(string id) => new(id, "preserve", new Dictionary<string, string> { ["lr"] = "2e-3" });

    /// <summary>Decides and applies, as the persistent actor does; returns the events and the new state.</summary>
    private static (IReadOnlyList<ISweepEvent> Events, SweepState State) Handle(SweepState state, ISweepCommand command)
    {
        var events = state.Decide(command);
        return (events, events.Aggregate(state, (s, e) => s.Apply(e)));
    }

    private static (IReadOnlyList<ISweepEvent> Events, SweepState State) HandleAt(SweepState state, ISweepCommand command, DateTime now)
    {
        var events = state.Decide(command, now);
        return (events, events.Aggregate(state, (s, e) => s.Apply(e)));
    }

    [Fact]
    public void An_infrastructure_fault_pauses_the_trial_with_a_doubling_backoff_and_never_spends_its_retry_budget()
    {
        var t0 = new DateTime(2026, 12, 1, 12, 0, 0, DateTimeKind.Utc);
        var state = HandleAt(Started(trials: 2, maxConcurrent: 1, retryBudget: 0), new RequestWork("w1"), t0).State;
        state = HandleAt(state, new ReportCheckpoint("t1", 1, 3, "/c/latest"), t0).State;

        var (paused, afterFault) = HandleAt(state, new ReportFailed("t1", 1, "infrastructure fault: IOException: No space left on device") { Infrastructure = true }, t0);

        Assert.Equal([new TrialPaused("t1", 1, "infrastructure fault: IOException: No space left on device", t0 + TimeSpan.FromSeconds(5))], paused);
        var t1 = afterFault.Trials["t1"];
        Assert.Equal((TrialStatus.Pending, 0, 1), (t1.Status, t1.FailedAttempts, t1.InfrastructureFaults));   // the budget of 0 is untouched
        // While t1 waits out its pause, the next trial is handed out; after it, t1 resumes from its checkpoint.
        Assert.Equal([new TrialStarted("t2", 1, "w2")], HandleAt(afterFault, new RequestWork("w2"), t0.AddSeconds(4)).Events);
        var (resumed, running) = HandleAt(afterFault, new RequestWork("w2"), t0.AddSeconds(5));
        Assert.Equal([new TrialStarted("t1", 2, "w2")], resumed);
        Assert.Equal(new CheckpointRef(3, "/c/latest"), running.Trials["t1"].LastCheckpoint);

        // A second fault in a row waits twice as long; a checkpoint written in between would start the backoff afresh.
        var second = HandleAt(running, new ReportFailed("t1", 2, "again") { Infrastructure = true }, t0.AddSeconds(6)).Events;
        Assert.Equal(t0.AddSeconds(6 + 10), Assert.IsType<TrialPaused>(Assert.Single(second)).RetryAt);
        var recovered = HandleAt(running, new ReportCheckpoint("t1", 2, 6, "/c/latest"), t0.AddSeconds(6)).State;
        Assert.Equal(0, recovered.Trials["t1"].InfrastructureFaults);
        Assert.Equal(TimeSpan.FromMinutes(5), SweepState.PauseAfter(20));

        // A failure of the trial's own still spends the budget: with none left, it fails for good.
        Assert.IsType<TrialFailed>(Assert.Single(HandleAt(running, new ReportFailed("t1", 2, "NonFiniteLossException"), t0.AddSeconds(6)).Events));
    }

    private static readonly (ISweepCommand Command, string Field)[] OutOfRangeCommands =
    [
        (new RequestWork(""), "trainer id"),
        (new RequestWork(null!), "trainer id"),
        (new RequestWork(new string('w', 513)), "trainer id"),
        (new RequestWork("w1", 0), "slots"),
        (new ReportCheckpoint("t1", 1, -1, "/c/latest"), "step"),
        (new ReportCheckpoint("t1", 1, 5, ""), "path"),
        (new ReportCheckpoint("", 1, 5, "/c/latest"), "trial id"),
        (new ReportCheckpoint("t1", 0, 5, "/c/latest"), "attempt"),
        (new ReportScores("t1", 1, null!), "step"),
        (new ReportCompleted("t1", 1, null!), "metrics"),
        (new ReportFailed("t1", 1, null!), "reason"),
    ];

    /// <summary>Indexes into <see cref="OutOfRangeCommands"/> (a theory's parameters must be public types; the commands are internal).</summary>
    public static TheoryData<int> OutOfRange => new(Enumerable.Range(0, OutOfRangeCommands.Length));

    [Theory]
    [MemberData(nameof(OutOfRange))]
    public void A_command_with_a_field_out_of_range_is_refused_before_it_reaches_the_state(int index)
    {
        var (command, field) = OutOfRangeCommands[index];
        var state = Handle(Started(), new RequestWork("w1")).State;   // t1 running, attempt 1

        var error = Assert.Throws<ArgumentException>(() => state.Decide(command));

        Assert.Contains(field, error.Message);
        Assert.Contains(command.GetType().Name, error.Message);
    }

    [Fact]
    public void A_checkpoint_or_score_beyond_the_trials_plan_is_refused_and_the_plan_survives_the_journal()
    {
        var start = new StartSweep("s1", [Trial("t1"), Trial("t2")], 1, 1) { PlannedSteps = new Dictionary<string, long> { ["t1"] = 300, ["t2"] = 1000 } };
        var started = Assert.IsType<SweepStarted>(Assert.Single(SweepState.Empty.Decide(start)));
        // As the journal stores it and the coordinator replays it.
        var stored = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(started, SweepEventSerializer.Json);
        var replayed = SweepState.Replay([System.Text.Json.JsonSerializer.Deserialize<SweepStarted>(stored, SweepEventSerializer.Strict)!]);
        Assert.Equal(300, SweepSnapshot.Of(replayed).ToState().PlannedSteps["t1"]);   // and through a snapshot
        var state = Handle(replayed, new RequestWork("w1")).State;   // t1 running, attempt 1

        var huge = Assert.Throws<ArgumentException>(() => state.Decide(new ReportCheckpoint("t1", 1, 1_000_000_000_000, "/c/latest")));
        Assert.Contains("beyond trial t1's plan of 300 steps", huge.Message);
        Assert.Throws<ArgumentException>(() => state.Decide(new ReportScores("t1", 1, new ScorePoint(301, new Scores(0.5, 0.5, 0.1)))));
        // At the plan's last step both are taken, and a later, larger checkpoint still moves the resume point.
        state = Handle(state, new ReportCheckpoint("t1", 1, 250, "/c/latest")).State;
        Assert.Equal(new CheckpointRef(300, "/c/latest"), Handle(state, new ReportCheckpoint("t1", 1, 300, "/c/latest")).State.Trials["t1"].LastCheckpoint);
        Assert.Single(state.Decide(new ReportScores("t1", 1, new ScorePoint(300, new Scores(0.5, 0.5, 0.1)))));

        // A plan that does not name every trial, or names 0 steps, is refused at the start.
        Assert.Throws<ArgumentException>(() => SweepState.Empty.Decide(start with { PlannedSteps = new Dictionary<string, long> { ["t1"] = 300 } }));
        Assert.Throws<ArgumentException>(() => SweepState.Empty.Decide(start with { PlannedSteps = new Dictionary<string, long> { ["t1"] = 300, ["t2"] = 0 } }));
    }

    private static SweepState Started(int trials = 3, int maxConcurrent = 2, int retryBudget = 1)
        => Handle(SweepState.Empty, new StartSweep("s1", Enumerable.Range(1, trials).Select(i => Trial($"t{i}")).ToList(), maxConcurrent, retryBudget)).State;

    [Fact]
    public void Starting_a_sweep_makes_every_trial_pending_and_a_second_start_changes_nothing()
    {
        var state = Started();

        Assert.All(state.Trials.Values, t => Assert.Equal(TrialStatus.Pending, t.Status));
        Assert.Equal(["t1", "t2", "t3"], state.Order);
        Assert.Empty(state.Decide(new StartSweep("s1", [Trial("t9")], 1, 0)));
    }

    [Fact]
    public void Trainers_get_pending_trials_in_order_up_to_the_concurrency_limit()
    {
        var state = Started(maxConcurrent: 2);

        (var first, state) = Handle(state, new RequestWork("w1"));
        (var second, state) = Handle(state, new RequestWork("w2"));
        (var third, state) = Handle(state, new RequestWork("w3"));
        (var again, _) = Handle(state, new RequestWork("w1"));

        Assert.Equal([new TrialStarted("t1", 1, "w1")], first);
        Assert.Equal([new TrialStarted("t2", 1, "w2")], second);
        Assert.Empty(third);   // two running already
        Assert.Empty(again);   // w1 is busy
    }

    [Fact]
    public void A_running_trial_records_checkpoints_and_completes_once()
    {
        var state = Handle(Started(), new RequestWork("w1")).State;

        (var checkpoint, state) = Handle(state, new ReportCheckpoint("t1", 1, 50, "/ckpt/t1/50"));
        (var older, state) = Handle(state, new ReportCheckpoint("t1", 1, 40, "/ckpt/t1/40"));
        (var done, state) = Handle(state, new ReportCompleted("t1", 1, Metrics));
        (var duplicate, state) = Handle(state, new ReportCompleted("t1", 1, Metrics));
        (var late, state) = Handle(state, new ReportCheckpoint("t1", 1, 60, "/ckpt/t1/60"));

        Assert.Single(checkpoint);
        Assert.Empty(older);
        Assert.Single(done);
        Assert.Empty(duplicate);
        Assert.Empty(late);
        var trial = state.Trials["t1"];
        Assert.Equal(TrialStatus.Completed, trial.Status);
        Assert.Equal(new CheckpointRef(50, "/ckpt/t1/50"), trial.LastCheckpoint);
        Assert.Equal(Metrics, trial.Metrics);
    }

    [Fact]
    public void A_completed_trial_is_never_handed_out_again()
    {
        var state = Started(trials: 1, maxConcurrent: 1);
        state = Handle(state, new RequestWork("w1")).State;
        state = Handle(state, new ReportCompleted("t1", 1, Metrics)).State;

        var (events, after) = Handle(state, new RequestWork("w2"));

        Assert.Empty(events);
        Assert.True(after.Finished);
    }

    [Fact]
    public void A_failed_attempt_is_retried_from_its_last_checkpoint_until_the_budget_runs_out()
    {
        var state = Started(trials: 1, maxConcurrent: 1, retryBudget: 2);
        state = Handle(state, new RequestWork("w1")).State;
        state = Handle(state, new ReportCheckpoint("t1", 1, 30, "/c/30")).State;

        (var firstFailure, state) = Handle(state, new ReportFailed("t1", 1, "NaN loss at step 31"));
        Assert.Equal([new TrialRetrying("t1", 1, "NaN loss at step 31")], firstFailure);
        Assert.Equal(TrialStatus.Pending, state.Trials["t1"].Status);
        Assert.Equal(new CheckpointRef(30, "/c/30"), state.Trials["t1"].LastCheckpoint);

        (var restart, state) = Handle(state, new RequestWork("w1"));
        Assert.Equal([new TrialStarted("t1", 2, "w1")], restart);
        (_, state) = Handle(state, new ReportFailed("t1", 2, "corrupt checkpoint"));
        state = Handle(state, new RequestWork("w1")).State;
        (var last, state) = Handle(state, new ReportFailed("t1", 3, "exception in step"));

        Assert.Equal([new TrialFailed("t1", 3, "exception in step")], last);
        Assert.Equal(TrialStatus.Failed, state.Trials["t1"].Status);
        Assert.Equal("exception in step", state.Trials["t1"].FailureReason);
        Assert.Equal(3, state.Trials["t1"].FailedAttempts);
        Assert.True(state.Finished);
        Assert.Empty(state.Decide(new RequestWork("w1")));
    }

    [Fact]
    public void With_no_retry_budget_the_first_failure_is_final_and_the_sweep_goes_on()
    {
        var state = Started(trials: 2, maxConcurrent: 1, retryBudget: 0);
        state = Handle(state, new RequestWork("w1")).State;

        state = Handle(state, new ReportFailed("t1", 1, "boom")).State;
        var (next, _) = Handle(state, new RequestWork("w1"));

        Assert.Equal(TrialStatus.Failed, state.Trials["t1"].Status);
        Assert.Equal([new TrialStarted("t2", 1, "w1")], next);
    }

    [Fact]
    public void A_lost_trainers_trials_are_requeued_without_spending_their_budget_and_its_late_reports_are_ignored()
    {
        var state = Started(trials: 2, maxConcurrent: 2, retryBudget: 0);
        state = Handle(state, new RequestWork("w1")).State;
        state = Handle(state, new RequestWork("w2")).State;
        state = Handle(state, new ReportCheckpoint("t1", 1, 20, "/c/20")).State;

        (var requeued, state) = Handle(state, new TrainerLost("w1"));
        (var takenOver, state) = Handle(state, new RequestWork("w3"));
        (var stale, state) = Handle(state, new ReportCompleted("t1", 1, Metrics));   // w1 comes back after a partition

        Assert.Equal([new TrialRequeued("t1", 1, "w1")], requeued);
        Assert.Equal([new TrialStarted("t1", 2, "w3")], takenOver);
        Assert.Empty(stale);
        Assert.Equal(0, state.Trials["t1"].FailedAttempts);
        Assert.Equal("w3", state.Trials["t1"].Trainer);
        Assert.Equal(new CheckpointRef(20, "/c/20"), state.Trials["t1"].LastCheckpoint);
        Assert.Equal(TrialStatus.Running, state.Trials["t2"].Status);
    }

    [Fact]
    public void Reports_for_unknown_trials_or_before_the_sweep_starts_are_ignored()
    {
        Assert.Empty(SweepState.Empty.Decide(new RequestWork("w1")));
        Assert.Empty(SweepState.Empty.Decide(new ReportCompleted("t1", 1, Metrics)));
        Assert.Empty(Started().Decide(new ReportFailed("nope", 1, "x")));
    }

    [Fact]
    public void Replaying_the_events_rebuilds_the_same_state()
    {
        var events = new List<ISweepEvent>();
        var state = SweepState.Empty;
        foreach (var command in new ISweepCommand[]
                 {
                     new StartSweep("s1", [Trial("t1"), Trial("t2")], 2, 1), new RequestWork("w1"), new RequestWork("w2"),
                     new ReportCheckpoint("t1", 1, 10, "/c"), new ReportFailed("t2", 1, "x"), new ReportCompleted("t1", 1, Metrics),
                     new TrainerLost("w2"), new RequestWork("w1"),
                 })
        {
            var decided = state.Decide(command);
            events.AddRange(decided);
            state = decided.Aggregate(state, (s, e) => s.Apply(e));
        }

        var replayed = SweepState.Replay(events);

        Assert.Equal(state.Order, replayed.Order);
        foreach (var id in state.Order) Assert.Equal(state.Trials[id], replayed.Trials[id]);
    }

    [Theory]
    [InlineData(0, 1, "max concurrent")]
    [InlineData(1, -1, "retry budget")]
    public void Impossible_sweeps_are_rejected(int maxConcurrent, int retryBudget, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => SweepState.Empty.Decide(new StartSweep("s", [Trial("t1")], maxConcurrent, retryBudget)));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void A_trainer_with_several_slots_gets_a_trial_per_free_slot_within_the_sweep_limit()
    {
        var state = Started(trials: 4, maxConcurrent: 3);

        (var first, state) = Handle(state, new RequestWork("w1", Slots: 2));
        (var second, state) = Handle(state, new RequestWork("w1", Slots: 2));
        (var full, state) = Handle(state, new RequestWork("w1", Slots: 2));
        (var other, state) = Handle(state, new RequestWork("w2", Slots: 2));
        (var limit, _) = Handle(state, new RequestWork("w2", Slots: 2));

        Assert.Equal(["t1", "t2"], first.Concat(second).Cast<TrialStarted>().Select(e => e.TrialId));
        Assert.Empty(full);
        Assert.Equal("t3", Assert.IsType<TrialStarted>(Assert.Single(other)).TrialId);
        Assert.Empty(limit);   // three running: the sweep's max-concurrent
    }

    [Fact]
    public void Orphaned_running_trials_are_requeued_with_their_checkpoint_and_budget_and_live_trainers_keep_theirs()
    {
        var state = Started(trials: 3, maxConcurrent: 3);
        state = Handle(state, new RequestWork("old-process")).State;
        state = Handle(state, new ReportCheckpoint("t1", 1, 25, "/c/t1")).State;
        state = Handle(state, new RequestWork("live")).State;

        (var requeued, state) = Handle(state, new RequeueOrphans(["live"]));
        (var resumed, state) = Handle(state, new RequestWork("new-process"));

        var only = Assert.IsType<TrialRequeued>(Assert.Single(requeued));
        Assert.Equal(("t1", "old-process"), (only.TrialId, only.TrainerId));
        Assert.Equal(TrialStatus.Running, state.Trials["t2"].Status);
        Assert.Equal("t1", Assert.IsType<TrialStarted>(Assert.Single(resumed)).TrialId);
        Assert.Equal(new CheckpointRef(25, "/c/t1"), state.Trials["t1"].LastCheckpoint);
        Assert.Equal(0, state.Trials["t1"].FailedAttempts);
        Assert.Empty(state.Decide(new RequeueOrphans(["new-process", "live"])));
    }

    [Fact]
    public void Scores_during_training_keep_one_point_per_step_the_latest_attempts_and_only_from_the_running_attempt()
    {
        var state = Started(trials: 1);
        (_, state) = Handle(state, new RequestWork("cpu", 1));
        ScorePoint Point(long step, double acquisition) => new(step, new Scores(0.9, acquisition, 0.01));

        var (events, after) = Handle(state, new ReportScores("t1", 1, Point(10, 0.2)));
        (_, after) = Handle(after, new ReportScores("t1", 1, Point(5, 0.1)));
        (_, after) = Handle(after, new ReportScores("t1", 1, Point(10, 0.3)));   // the same step again (a resumed attempt): replaced
        var (stale, _) = Handle(after, new ReportScores("t1", 7, Point(15, 0.9)));   // not the running attempt

        Assert.Single(events);
        Assert.Empty(stale);
        Assert.Equal([5L, 10L], after.Trials["t1"].Curve.Select(p => p.Step));
        Assert.Equal(0.3, after.Trials["t1"].Curve[1].Scores.Acquisition);
    }
}
