using System.Text;
using Akka.Actor;
using Akka.Configuration;
using Scale.Actors.Persistence;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

public sealed class SweepCoordinatorTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly string Database = Path.Combine(Path.GetTempPath(), $"scale-coordinator-{Guid.NewGuid():N}.db");

    public SweepCoordinatorTests()
        : base(ConfigurationFactory.ParseString("akka.test.single-expect-default = 20s\nakka.loglevel = WARNING")
                   .WithFallback(PersistenceConfig.Sqlite(Database)), "coordinator-tests")
    {
    }

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
        var journal = Encoding.UTF8.GetString(File.ReadAllBytes(Database));
        Assert.Contains("trial-checkpointed.v1", journal);
        Assert.DoesNotContain("Scale.Actors.Sweeps.TrialCheckpointed", journal);
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

    protected override void AfterAll()
    {
        base.AfterAll();
        foreach (var file in new[] { Database, Database + "-wal", Database + "-shm" })
            if (File.Exists(file)) File.Delete(file);
    }
}
