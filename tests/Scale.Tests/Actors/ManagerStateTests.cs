using Akka.Actor;
using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;
using Xunit;

namespace Scale.Tests.Actors;

/// <summary>The sweep manager's decisions and events, without an actor system.</summary>
public class ManagerStateTests
{
    private static string Definition(string name, string methods = "frozen, full") => SweepDefinitionJson.Write(SweepFiles.Parse(
        $"sweep {{\n name = {name}\n experiment {{\n model {{\n hidden-size = 32\n layers = 2\n heads = 2\n ffn = 64\n }}\n }}\n methods = [{methods}]\n}}", $"{name}.hocon", "."));

    private static ManagerState Submitted(params string[] names)
        => names.Aggregate(ManagerState.Empty, (state, name) => state.Apply(new SweepSubmitted(name, Definition(name))));

    [Fact]
    public void A_new_sweep_is_read_once_and_then_checked_against_its_journal_before_it_is_recorded()
    {
        var decision = Assert.IsType<SubmitDecision.First>(ManagerState.Empty.Decide(new SubmitSweep("a", Definition("a")), null, null, beingSubmitted: false));
        Assert.Equal("a", decision.Definition.Name);
        Assert.Null(ManagerState.CheckFirst("a", decision.Definition, SweepState.Empty));
        var elsewhere = SweepState.Replay([new SweepStarted("a", decision.Definition.Trials.Take(1).ToList(), 1, 0) { Fingerprint = "another" }]);
        Assert.IsType<ArgumentException>(ManagerState.CheckFirst("a", decision.Definition, elsewhere));
        Assert.IsType<InvalidOperationException>(ManagerState.CheckFirst("a", decision.Definition, new Status.Failure(new TimeoutException("no answer"))));

        var state = ManagerState.Empty.Apply(new SweepSubmitted("a", Definition("a")), decision.Definition);
        Assert.Equal(["a"], state.Order);
        Assert.Same(decision.Definition, state.Definitions["a"]);
        Assert.Equal(["a"], state.Runnable);
    }

    [Fact]
    public void A_submission_is_refused_when_it_does_not_validate_names_another_sweep_or_is_not_this_processes()
    {
        Assert.IsType<SubmitDecision.Refuse>(ManagerState.Empty.Decide(new SubmitSweep("a", "{ not json"), null, null, false));
        var named = Assert.IsType<SubmitDecision.Refuse>(ManagerState.Empty.Decide(new SubmitSweep("b", Definition("a")), null, null, false));
        Assert.Contains("named 'a'", named.Error.Message);
        var other = Assert.IsType<SubmitDecision.Refuse>(ManagerState.Empty.Decide(new SubmitSweep("a", Definition("a")), "mine", null, false));
        Assert.Contains("runs sweep 'mine' only", other.Error.Message);
        var busy = Assert.IsType<SubmitDecision.Refuse>(ManagerState.Empty.Decide(new SubmitSweep("a", Definition("a")), null, null, beingSubmitted: true));
        Assert.IsType<InvalidOperationException>(busy.Error);
    }

    [Fact]
    public void A_sweep_submitted_again_goes_to_its_coordinator_unless_its_trials_changed()
    {
        var state = Submitted("a");
        Assert.IsType<SubmitDecision.Resubmit>(state.Decide(new SubmitSweep("a", Definition("a")), null, null, false));
        var changed = Assert.IsType<SubmitDecision.Refuse>(state.Decide(new SubmitSweep("a", Definition("a", "frozen, full, lora")), null, null, false));
        Assert.IsType<ArgumentException>(changed.Error);
    }

    [Fact]
    public void Cancelled_and_quarantined_sweeps_answer_for_themselves_and_take_no_submission()
    {
        var state = Submitted("a", "b", "c");
        var cancel = Assert.IsType<CancelDecision.Record>(state.Decide(new CancelSweep("a")));
        state = state.Apply(cancel.Event).Quarantine("b", "its journal cannot be read");
        Assert.IsType<CancelDecision.AlreadyCancelled>(state.Decide(new CancelSweep("a")));
        Assert.IsType<CancelDecision.Refuse>(state.Decide(new CancelSweep("unknown")));

        Assert.Equal(new NoWorkAvailable(true), state.Answer(new ToSweep("a", new RequestWork("t"))));
        Assert.Null(state.Answer(new ToSweep("a", GetSweepState.Instance)));   // its state is still its coordinator's
        Assert.Contains("quarantined", Assert.IsType<Status.Failure>(state.Answer(new ToSweep("b", GetSweepState.Instance))).Cause.Message);
        Assert.Contains("No sweep 'x'", Assert.IsType<Status.Failure>(state.Answer(new ToSweep("x", GetSweepState.Instance))).Cause.Message);
        Assert.Null(state.Answer(new ToSweep("c", new RequestWork("t"))));

        Assert.IsType<SubmitDecision.Refuse>(state.Decide(new SubmitSweep("a", Definition("a")), null, null, false));
        Assert.IsType<SubmitDecision.Refuse>(state.Decide(new SubmitSweep("b", Definition("b")), null, null, false));
        Assert.Equal(["a", "c"], state.Runnable);
        var page = state.Page(GetSweeps.Instance);
        Assert.Equal(["a", "b", "c"], page.Sweeps.Select(s => s.SweepId));
        Assert.Contains("a", page.Cancelled);
        Assert.True(page.Quarantined.ContainsKey("b"));
    }

    [Fact]
    public void Rows_that_no_longer_validate_or_cannot_be_read_quarantine_their_sweep_only()
    {
        var state = Submitted("a")
            .Apply(new SweepSubmitted("old", "{\"name\": \"old\"}"))
            .Apply(new UnreadableManagerEvent("sweep-submitted-v1", "damaged", "bad JSON"), 3)
            .Apply(new UnreadableManagerEvent("sweep-cancelled-v1", "a", "bad JSON"), 4)
            .Apply(new UnreadableManagerEvent("sweep-submitted-v1", null, "no id"), 5);
        Assert.Equal(["a"], state.Runnable.Where(id => state.Definitions.ContainsKey(id)));
        Assert.StartsWith("its definition no longer validates", state.Quarantined["old"]);
        Assert.Contains("row 3", state.Quarantined["damaged"]);
        Assert.Contains("a", state.Cancelled);   // what was cancelled stays cancelled
        Assert.True(state.Quarantined.ContainsKey("(manager journal row 5)"));
        Assert.Equal(["a", "old", "damaged"], state.Order);
    }

    [Fact]
    public void A_workers_report_is_kept_for_a_submitted_sweep_only()
    {
        var state = Submitted("a").Unprepare(new ReportSweepUnprepared("a", "w1", "no such folder")).Unprepare(new ReportSweepUnprepared("x", "w1", "?"));
        Assert.Equal("w1: no such folder", Assert.Single(state.Unprepared).Value);
    }
}
