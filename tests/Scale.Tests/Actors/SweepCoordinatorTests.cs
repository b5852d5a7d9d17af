using Scale.Model.Experiments;
using System.Text;
using Akka.Actor;
using Akka.Configuration;
using Scale.Actors.Persistence;
using Scale.Actors.Sweeps;
using Scale.Tests.Persistence;

namespace Scale.Tests.Actors;

/// <summary>The coordinator's persistence contract, run against each journal backend: SQLite (embedded) and PostgreSQL (clusters).</summary>
public abstract class SweepCoordinatorContract(Config persistence, string name)
    : Akka.TestKit.Xunit2.TestKit(ConfigurationFactory.ParseString("akka.test.single-expect-default = 30s\nakka.loglevel = WARNING").WithFallback(persistence), name)
{
    /// <summary>Everything the backend stored, as text, to check what was written (manifests, never CLR type names).</summary>
    protected abstract string StoredText();

    private static TrialSpec Trial(string id) => new(id, "preserve", new Dictionary<string, string> { ["lr"] = "2e-3" });

    [Fact]
    public void A_restarted_coordinator_recovers_the_sweep_from_the_sqlite_journal()
    {
        var coordinator = Sys.ActorOf(SweepCoordinator.Props("s1"));
        coordinator.Tell(new StartSweep("s1", [Trial("t1"), Trial("t2")], MaxConcurrent: 2, RetryBudget: 1), TestActor);
        ExpectMsg<Accepted>(a => Assert.Equal(1, a.EventsPersisted));
        coordinator.Tell(new RequestWork("w1"), TestActor);
        var granted = ExpectMsg<WorkGranted>();
        coordinator.Tell(new ReportCheckpoint("t1", granted.Attempt, 50, "/ckpt/t1/50"), TestActor);
        ExpectMsg<Accepted>();
        coordinator.Tell(new ReportCheckpoint("t1", granted.Attempt, 50, "/ckpt/t1/50"), TestActor);   // a duplicate
        ExpectMsg<Accepted>(a => Assert.Equal(0, a.EventsPersisted));
        Watch(coordinator);
        coordinator.Tell(PoisonPill.Instance);
        ExpectTerminated(coordinator);

        var recovered = Sys.ActorOf(SweepCoordinator.Props("s1"));
        recovered.Tell(GetSweepState.Instance, TestActor);
        var state = ExpectMsg<SweepState>();
        recovered.Tell(new RequestWork("w2"), TestActor);
        var next = ExpectMsg<WorkGranted>();

        Assert.Equal("t1", granted.Trial.Id);
        Assert.Equal(TrialStatus.Running, state.Trials["t1"].Status);
        Assert.Equal(new CheckpointRef(50, "/ckpt/t1/50"), state.Trials["t1"].LastCheckpoint);
        Assert.Equal(TrialStatus.Pending, state.Trials["t2"].Status);
        Assert.Equal("t2", next.Trial.Id);
        var journal = StoredText();
        Assert.Contains("trial-checkpointed.v1", journal);
        Assert.DoesNotContain("Scale.Actors.Sweeps.TrialCheckpointed", journal);
    }

    [Fact]
    public void Recovery_from_a_snapshot_and_the_events_after_it_gives_the_same_state()
    {
        var coordinator = Sys.ActorOf(SweepCoordinator.Props("snap", snapshotEvery: 3));
        coordinator.Tell(new StartSweep("snap", [Trial("t1"), Trial("t2"), Trial("t3")], MaxConcurrent: 3, RetryBudget: 1), TestActor);
        ExpectMsg<Accepted>();
        foreach (var trainer in new[] { "w1", "w2" })
        {
            coordinator.Tell(new RequestWork(trainer), TestActor);
            ExpectMsg<WorkGranted>();
        }
        coordinator.Tell(new ReportCheckpoint("t1", 1, 10, "/c/t1"), TestActor);
        ExpectMsg<Accepted>();
        coordinator.Tell(new ReportCompleted("t2", 1, new TrialMetrics(new Scores(0.5, 0.25, 0.1)) { FinalLoss = 1.5 }), TestActor);
        ExpectMsg<Accepted>();
        coordinator.Tell(new ReportFailed("t1", 1, "boom"), TestActor);
        ExpectMsg<Accepted>();
        coordinator.Tell(GetSweepState.Instance, TestActor);
        var before = ExpectMsg<SweepState>();
        Watch(coordinator);
        coordinator.Tell(PoisonPill.Instance);
        ExpectTerminated(coordinator);

        var recovered = Sys.ActorOf(SweepCoordinator.Props("snap", snapshotEvery: 3));
        recovered.Tell(GetSweepState.Instance, TestActor);
        var after = ExpectMsg<SweepState>();

        Assert.Equal(before.Order, after.Order);
        foreach (var id in before.Order) Assert.Equal(before.Trials[id] with { Spec = after.Trials[id].Spec }, after.Trials[id]);
        Assert.Equal(1.5, after.Trials["t2"].Metrics!.FinalLoss);
        Assert.Contains("sweep-snapshot.v2", StoredText());
    }

    [Fact]
    public void A_report_of_a_superseded_attempt_is_answered_as_such_and_not_recorded()
    {
        var coordinator = Sys.ActorOf(SweepCoordinator.Props("stale"));
        coordinator.Tell(new StartSweep("stale", [Trial("t1")], MaxConcurrent: 1, RetryBudget: 1), TestActor);
        ExpectMsg<Accepted>();
        coordinator.Tell(new RequestWork("node-a/cpu"), TestActor);
        ExpectMsg<WorkGranted>(w => Assert.Equal(1, w.Attempt));
        coordinator.Tell(new RequeueLostNodes(["node-b"]), TestActor);   // node-a is gone: t1 is pending again
        ExpectMsg<Accepted>(a => Assert.Equal(1, a.EventsPersisted));
        coordinator.Tell(new RequestWork("node-b/cpu"), TestActor);
        ExpectMsg<WorkGranted>(w => Assert.Equal(2, w.Attempt));

        coordinator.Tell(new ReportCheckpoint("t1", 1, 10, "/c/old"), TestActor);
        ExpectMsg<AttemptSuperseded>(s => Assert.Equal(("t1", 1), (s.TrialId, s.Attempt)));
        coordinator.Tell(new ReportCompleted("t1", 1, new TrialMetrics(new Scores(1, 1, 0))), TestActor);
        ExpectMsg<AttemptSuperseded>();
        coordinator.Tell(new ReportCompleted("t1", 2, new TrialMetrics(new Scores(0.5, 0.5, 0.1))), TestActor);
        ExpectMsg<Accepted>(a => Assert.Equal(1, a.EventsPersisted));
        coordinator.Tell(new ReportCompleted("t1", 2, new TrialMetrics(new Scores(0.5, 0.5, 0.1))), TestActor);   // sent again: recorded once
        ExpectMsg<AttemptSuperseded>();
        coordinator.Tell(GetSweepState.Instance, TestActor);
        var state = ExpectMsg<SweepState>();

        Assert.Equal(TrialStatus.Completed, state.Trials["t1"].Status);
        Assert.Equal(0.5, state.Trials["t1"].Metrics!.Scores.Retention);
        Assert.Null(state.Trials["t1"].LastCheckpoint);
    }

    [Fact]
    public void A_grant_whose_answer_was_lost_is_pending_again_when_its_trainer_asks_without_it()
    {
        var coordinator = Sys.ActorOf(SweepCoordinator.Props("lost-grant"));
        coordinator.Tell(new StartSweep("lost-grant", [Trial("t1"), Trial("t2")], MaxConcurrent: 1, RetryBudget: 1), TestActor);
        ExpectMsg<Accepted>();
        coordinator.Tell(new RequestWork("w1") { Running = [] }, TestActor);
        ExpectMsg<WorkGranted>(w => Assert.Equal(("t1", 1), (w.Trial.Id, w.Attempt)));   // suppose this answer never reached w1

        coordinator.Tell(new RequestWork("w1") { Running = [] }, TestActor);
        var again = ExpectMsg<WorkGranted>();
        coordinator.Tell(new RequestWork("w1") { Running = ["t1"] }, TestActor);
        ExpectMsg<NoWorkAvailable>(n => Assert.False(n.SweepFinished));   // max-concurrent 1: t2 waits

        Assert.Equal(("t1", 2), (again.Trial.Id, again.Attempt));
    }

    [Fact]
    public void An_impossible_sweep_is_refused_without_persisting_anything()
    {
        var coordinator = Sys.ActorOf(SweepCoordinator.Props("bad"));

        coordinator.Tell(new StartSweep("bad", [Trial("t1")], MaxConcurrent: 0, RetryBudget: 1), TestActor);
        var failure = ExpectMsg<Status.Failure>();
        coordinator.Tell(new RequestWork("w1"), TestActor);

        Assert.Contains("max concurrent", failure.Cause.Message);
        ExpectMsg<NoWorkAvailable>(n => Assert.False(n.SweepFinished));
    }

}

/// <summary>A fresh database file per test (the SQLite driver pools connections process-wide: a shared file deleted after one test would be read-only to the next).</summary>
public sealed class SqliteSweepCoordinatorTests : SweepCoordinatorContract
{
    private readonly string database;

    public SqliteSweepCoordinatorTests() : this(Path.Combine(Path.GetTempPath(), $"scale-coordinator-{Guid.NewGuid():N}.db"))
    {
    }

    private SqliteSweepCoordinatorTests(string database) : base(PersistenceConfig.Sqlite(database), "coordinator-sqlite")
        => this.database = database;

    protected override string StoredText()
        => string.Concat(new[] { database, database + "-wal" }.Where(File.Exists).Select(f => Encoding.UTF8.GetString(File.ReadAllBytes(f))));

    protected override void AfterAll()
    {
        base.AfterAll();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        foreach (var file in new[] { database, database + "-wal", database + "-shm" })
            if (File.Exists(file)) File.Delete(file);
    }
}

/// <summary>A fresh database per test on a real PostgreSQL server.</summary>
public sealed class PostgresSweepCoordinatorTests : SweepCoordinatorContract, IClassFixture<PostgresServer>
{
    private readonly string database;

    public PostgresSweepCoordinatorTests(PostgresServer server) : this(server.NewDatabase())
    {
    }

    private PostgresSweepCoordinatorTests(string database) : base(PersistenceConfig.PostgreSql(database), "coordinator-postgres")
        => this.database = database;

    protected override string StoredText()
    {
        using var connection = new Npgsql.NpgsqlConnection(database);
        connection.Open();
        using var command = new Npgsql.NpgsqlCommand(
            "SELECT coalesce(string_agg(manifest, ','), '') FROM (SELECT manifest FROM journal UNION ALL SELECT manifest FROM snapshot) m", connection);
        return (string)command.ExecuteScalar()!;
    }
}
