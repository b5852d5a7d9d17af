using System.Globalization;
using Akka.Actor;
using Akka.Configuration;
using Scale.Actors.Persistence;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Model;
using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Experiments;
using Scale.Model.Transformer;

namespace Scale.Tests.Actors;

public sealed class TrainerTests() : SqliteTestKit("trainer-tests")
{
    /// <summary>Runs trials with the real TrialRunner on a tiny biography task; "lr" overrides the learning rate.</summary>
    private sealed class RunnerExecutor(TrialRunner runner, PhaseSpec phase, string root) : ITrialExecutor
    {
        public TrialMetrics Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, CancellationToken cancellation)
        {
            double lr = trial.Parameters.TryGetValue("lr", out var text) ? double.Parse(text, CultureInfo.InvariantCulture) : phase.LearningRate;
            var plan = new TrialPlan(MethodSpec.Preset(trial.Method), phase with { LearningRate = lr }, Seed: 9, CheckpointEvery: 3);
            var outcome = runner.Run(plan, Path.Combine(root, trial.Id), resume?.Path, onCheckpoint: onCheckpoint, cancellation: cancellation);
            return new TrialMetrics(new Scores(outcome.Scores.Retention, outcome.Scores.Acquisition, outcome.Scores.Forgetting));
        }
    }

    [Fact]
    public void A_trainer_pulls_every_trial_reports_checkpoints_and_outcomes_and_stops_when_the_sweep_is_done()
    {
        using var task = new Scale.Tests.Experiments.TinyBioTask();
        var executor = new RunnerExecutor(task.Runner, new PhaseSpec { Steps = 7, Batch = 4, SequenceLength = 32, WarmupSteps = 1 }, Root);
        TrialSpec Trial(string id, string method, string? lr = null)
            => new(id, method, lr is null ? new Dictionary<string, string>() : new Dictionary<string, string> { ["lr"] = lr });
        var coordinator = Sys.ActorOf(SweepCoordinator.Props("sweep-a"));
        coordinator.Tell(new StartSweep("sweep-a", [Trial("t1", "preserve"), Trial("t2", "full"), Trial("t3", "full", "1e12")],
                                        MaxConcurrent: 1, RetryBudget: 1), TestActor);
        ExpectMsg<Accepted>();

        var trainer = Sys.ActorOf(Trainer.Props(coordinator, "cpu-0", executor, TimeSpan.FromMilliseconds(200)));
        Watch(trainer);
        ExpectTerminated(trainer, TimeSpan.FromMinutes(3));
        coordinator.Tell(GetSweepState.Instance, TestActor);
        var state = ExpectMsg<SweepState>();

        Assert.True(state.Finished);
        Assert.Equal(TrialStatus.Completed, state.Trials["t1"].Status);
        Assert.Equal(TrialStatus.Completed, state.Trials["t2"].Status);
        Assert.NotNull(state.Trials["t1"].Metrics);
        Assert.Equal(new CheckpointRef(7, Path.Combine(Root, "t2", "final")), state.Trials["t2"].LastCheckpoint);
        var failed = state.Trials["t3"];
        Assert.Equal(TrialStatus.Failed, failed.Status);
        Assert.Equal(2, failed.FailedAttempts);   // the first attempt and its one retry
        Assert.Contains("NonFiniteLossException", failed.FailureReason);
    }
}
