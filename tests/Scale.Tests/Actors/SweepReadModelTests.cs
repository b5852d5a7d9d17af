using Scale.Model.Experiments;
using Akka.Actor;
using Akka.Configuration;
using Scale.Actors.Persistence;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

/// <summary>Read-only commands replay the journal through Akka.Persistence.Query; they never start a coordinator.</summary>
public sealed class SweepReadModelTests() : SqliteTestKit("read-model-tests")
{
    private static TrialSpec Trial(string id) => new(id, "frozen", new Dictionary<string, string>());

    [Fact]
    public async Task The_read_model_replays_a_live_sweeps_journal_without_a_persistent_actor_and_the_coordinator_goes_on_writing()
    {
        var coordinator = Sys.ActorOf(SweepCoordinator.Props("live", snapshotEvery: 2));
        coordinator.Tell(new StartSweep("live", [Trial("a"), Trial("b"), Trial("c")], 2, 1), TestActor);
        ExpectMsg<Accepted>();
        coordinator.Tell(new RequestWork("t1", 2), TestActor);
        ExpectMsg<WorkGranted>();
        coordinator.Tell(new ReportCheckpoint("a", 1, 5, "/tmp/a/latest"), TestActor);
        ExpectMsg<object>();
        coordinator.Tell(GetSweepState.Instance, TestActor);
        var live = ExpectMsg<SweepState>();

        // The reading system has only the read journal: a persistent actor could not even start in it.
        using var reader = ActorSystem.Create("reader", ConfigurationFactory.ParseString("akka.loglevel = WARNING")
            .WithFallback(PersistenceConfig.SqliteReadOnly(Path.Combine(Root, "sweeps.db"))));
        var read = await SweepReadModel.ReadAsync(reader, "live");

        Assert.Equal(SweepSnapshot.Of(live), SweepSnapshot.Of(read), new SnapshotComparer());
        Assert.False((await SweepReadModel.ReadAsync(reader, "unknown")).Started);
        // The coordinator still owns its persistence id: it records the next event, and a new reader sees it.
        coordinator.Tell(new ReportCompleted("a", 1, new TrialMetrics(new Scores(1, 0, 0))), TestActor);
        ExpectMsg<object>();
        var after = await SweepReadModel.ReadAsync(reader, "live");
        Assert.Equal(TrialStatus.Completed, after.Trials["a"].Status);
        await reader.Terminate();
    }

    /// <summary>Snapshots as JSON: records holding lists compare by reference otherwise.</summary>
    private sealed class SnapshotComparer : IEqualityComparer<SweepSnapshot>
    {
        public bool Equals(SweepSnapshot? x, SweepSnapshot? y) => Json(x) == Json(y);
        public int GetHashCode(SweepSnapshot obj) => Json(obj).GetHashCode();
        private static string Json(SweepSnapshot? s) => System.Text.Json.JsonSerializer.Serialize(s);
    }
}
