using Scale.Model.Experiments;
using System.Diagnostics.Metrics;
using Akka.Actor;
using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;
using Scale.Actors.Telemetry;
using Scale.Actors.Trainers;

namespace Scale.Tests.Actors;

/// <summary>
/// What every node shows operators, read without HTTP: the view follows the sweep manager (a sweep submitted, a trial
/// handed out), takes this node's trainers' progress from the event stream, and publishes it as the "Scale" gauges.
/// </summary>
public sealed class NodeViewTests() : SqliteTestKit("node-view", new ClusterConfig("127.0.0.1", 0, [], ["seed"]).ToConfig())
{
    /// <summary>This test system's own address: the view's node.</summary>
    private string Self => Akka.Cluster.Cluster.Get(Sys).SelfAddress.ToString();

    private static string Definition(string name) => SweepDefinitionJson.Write(SweepFiles.Parse(
        $"sweep {{\n name = {name}\n experiment {{\n model {{\n hidden-size = 32\n layers = 2\n heads = 2\n ffn = 64\n }}\n }}\n methods = [frozen, full]\n}}", $"{name}.hocon", "."));

    /// <summary>The gauges' current measurements by instrument name, as an exporter would collect them.</summary>
    private static List<(string Name, double Value, Dictionary<string, object?> Tags)> Gauges()
    {
        var measured = new List<(string, double, Dictionary<string, object?>)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == SweepMetrics.MeterName) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<int>((i, v, tags, _) => measured.Add((i.Name, v, tags.ToArray().ToDictionary(t => t.Key, t => t.Value))));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => measured.Add((i.Name, v, tags.ToArray().ToDictionary(t => t.Key, t => t.Value))));
        listener.Start();
        listener.RecordObservableInstruments();
        return measured;
    }

    [Fact]
    public async Task The_view_follows_the_manager_and_this_nodes_trainers_and_publishes_them_as_gauges()
    {
        var manager = Sys.ActorOf(SweepManager.Props(null, TimeSpan.FromMinutes(10)), "sweeps");
        await using var view = new NodeView(Sys, manager, Self, ClusterMembership.Follow(Sys, "view-membership"), Root, seed: true, ["cpu"]);

        manager.Tell(new SubmitSweep("watched", Definition("watched")), TestActor);
        ExpectMsg<Accepted>();
        manager.Tell(new ToSweep("watched", new RequestWork($"{Self}/cpu")), TestActor);
        var granted = ExpectMsg<WorkGranted>();

        // The trial handed out is written as an event on this node: the view refreshes without waiting for its period.
        await AwaitAssertAsync(async () =>
        {
            var sweeps = await view.SweepsAsync();
            var watched = Assert.Single(sweeps);
            Assert.Equal(TrialStatus.Running, watched.Trials[granted.Trial.Id].Status);
        }, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(100));

        Sys.EventStream.Publish(new TrialProgress(granted.Trial.Id, granted.Attempt, 7, 100, 2.5, 1234, 10));
        await AwaitAssertAsync(async () =>
        {
            var trainer = Assert.Single(view.Trainers(await view.SweepsAsync()));
            Assert.Equal(($"{Self}/cpu", "cpu"), (trainer.Trainer, trainer.Device));
            var trial = Assert.Single(trainer.Trials);
            Assert.Equal((granted.Trial.Id, 7L, 1234.0), (trial.Trial, trial.Step!.Value, trial.TokensPerSecond!.Value));
        }, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(100));

        // Not a member yet, so not the node the sweep manager runs on: no cluster-wide series here, this node's own only.
        var before = Gauges();
        Assert.DoesNotContain(before, g => g.Name is "scale_trials" or "scale_sweeps_quarantined" or "scale_trial_attempts_failed" or "scale_cluster_members");
        Assert.Contains(before, g => g.Name == "scale_trainer_tokens_per_second" && (string?)g.Tags["trial"] == granted.Trial.Id);

        // Up as the only (so the oldest) seed: the cluster-wide series, every state of the sweep's trials, zeros included.
        Akka.Cluster.Cluster.Get(Sys).Join(Akka.Cluster.Cluster.Get(Sys).SelfAddress);
        await AwaitConditionAsync(() => Task.FromResult(view.Membership.Current.OldestSeed == Self), TimeSpan.FromSeconds(30));
        var gauges = Gauges();
        Assert.Contains(gauges, g => g.Name == "scale_trials" && (string?)g.Tags["sweep"] == "watched" && (string?)g.Tags["state"] == "running" && g.Value == 1);
        Assert.Contains(gauges, g => g.Name == "scale_trials" && (string?)g.Tags["state"] == "failed" && g.Value == 0);
        Assert.Equal(5, gauges.Count(g => g.Name == "scale_trials"));
        Assert.Contains(gauges, g => g.Name == "scale_trial_attempts_failed" && (string?)g.Tags["sweep"] == "watched" && g.Value == 0);
        Assert.Contains(gauges, g => g.Name == "scale_cluster_members" && (string?)g.Tags["status"] == "up" && g.Value == 1);
        Assert.Contains(gauges, g => g.Name == "scale_trials" && (string?)g.Tags["state"] == "pending" && g.Value == 1);
        Assert.Contains(gauges, g => g.Name == "scale_trainer_tokens_per_second" && (string?)g.Tags["trial"] == granted.Trial.Id && g.Value == 1234);
        Assert.Contains(gauges, g => g.Name == "scale_trial_loss" && (string?)g.Tags["trainer"] == $"{Self}/cpu" && g.Value == 2.5);
        Assert.Contains(gauges, g => g.Name == "scale_trial_checkpoint_age_seconds" && (string?)g.Tags["trial"] == granted.Trial.Id && g.Value >= 0);
        Assert.Contains(gauges, g => g.Name == "scale_sweeps_quarantined" && g.Value == 0);
        Assert.Null(view.TrialDirectory("watched", "../elsewhere"));   // a trial id that would leave the data directory
    }

    [Fact]
    public void Progress_gives_steps_per_second_between_reports_and_leaves_with_the_trial()
    {
        var clock = new DateTime(2026, 12, 6, 12, 0, 0, DateTimeKind.Utc);
        var board = new ProgressBoard(() => clock);
        board.Observe(new TrialStarted("t", 1, "n/cpu"));
        board.Observe(new TrialProgress("t", 1, 10, 100, 3.0, 500, 60));
        clock += TimeSpan.FromSeconds(2);
        board.Observe(new TrialProgress("t", 1, 20, 100, 2.0, 500, 50));
        clock += TimeSpan.FromSeconds(1);

        Assert.Equal(5.0, board.StepsPerSecond("t"));   // 10 steps in 2 s
        Assert.Equal(20, board.Of("t")!.Step);
        Assert.Equal(3.0, board.CheckpointAge("t"));     // since the trial started

        board.Observe(new TrialCompleted("t", 1, new TrialMetrics(new Scores(0.5, 0.5, 0.1))));
        Assert.Null(board.Of("t"));
        Assert.Null(board.CheckpointAge("t"));
    }
}
