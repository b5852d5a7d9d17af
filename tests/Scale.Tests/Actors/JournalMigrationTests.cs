using Akka.Actor;
using Microsoft.Data.Sqlite;
using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

/// <summary>
/// Journals written by the version before the sweep manager had a persistence id of its own (commit ec0d88c; the
/// fixtures in tests/Scale.Tests/Fixtures/journals-ec0d88c were made by that build: a seed's journal with a finished
/// sweep `legacy` and a cancelled sweep `dropped`) recover under the new one, and a sweep may now be named `manager`.
/// </summary>
public sealed class JournalMigrationTests() : SqliteTestKit("journal-migration", new ClusterConfig("127.0.0.1", 0, [], ["seed"]).ToConfig())
{
    public static string Fixture(string name) => Repository.File("tests", "Scale.Tests", "Fixtures", "journals-ec0d88c", name);

    /// <summary>Puts a fixture journal in place of the test's own before any actor has opened it.</summary>
    private void UseJournal(string fixture)
    {
        SqliteConnection.ClearAllPools();
        var database = Path.Combine(Root, "sweeps.db");
        foreach (var side in new[] { "-wal", "-shm" }) File.Delete(database + side);
        File.Copy(Fixture(fixture), database, overwrite: true);
    }

    private long Rows(string persistenceId, string? manifest = null)
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(Root, "sweeps.db")};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM journal WHERE persistence_id = $id" + (manifest is null ? "" : " AND manifest = $manifest");
        command.Parameters.AddWithValue("$id", persistenceId);
        if (manifest is not null) command.Parameters.AddWithValue("$manifest", manifest);
        return Convert.ToInt64(command.ExecuteScalar());
    }

    private IActorRef Manager(string name) => Sys.ActorOf(SweepManager.Props(null, TimeSpan.FromMinutes(10)), name);

    private void Stop(IActorRef actor)
    {
        Watch(actor);
        actor.Tell(PoisonPill.Instance);
        ExpectTerminated(actor);
    }

    private SweepList Sweeps(IActorRef manager)
    {
        manager.Tell(GetSweeps.Instance, TestActor);
        return ExpectMsg<SweepList>();
    }

    private static string Definition(string name)
    {
        var text = File.ReadAllText(Fixture("legacy.hocon")).Replace("name = legacy", $"name = {name}");
        return SweepDefinitionJson.Write(SweepFiles.Parse(text, $"{name}.hocon", "."));
    }

    [Fact]
    public void A_seeds_journal_from_before_the_managers_own_id_recovers_and_a_sweep_named_manager_then_keeps_to_its_own_journal()
    {
        UseJournal("cluster-seed.db");
        Assert.Equal(3, Rows(SweepManager.LegacyPersistenceId));   // two submissions and a cancellation
        Assert.Equal(0, Rows(SweepManager.ManagerPersistenceId));

        var first = Manager("sweeps-1");
        var list = Sweeps(first);
        Assert.Equal(["legacy", "dropped"], list.Sweeps.Select(s => s.SweepId));
        Assert.Equal(["dropped"], list.Cancelled);
        Assert.Empty(list.Quarantined);
        first.Tell(new ToSweep("legacy", GetSweepState.Instance), TestActor);
        var legacy = ExpectMsg<SweepState>();
        Assert.True(legacy.Finished);
        Assert.All(legacy.Trials.Values, t => Assert.Equal(TrialStatus.Completed, t.Status));
        // Copied once to the manager's own id; the former rows stay as they were.
        Assert.Equal(3, Rows(SweepManager.ManagerPersistenceId));
        Assert.Equal(3, Rows(SweepManager.LegacyPersistenceId));

        // A sweep named `manager` (its journal is the former id): it starts after the manager's old rows and reads only its own.
        first.Tell(new SubmitSweep("manager", Definition("manager")), TestActor);
        Assert.Equal(1, ExpectMsg<Accepted>().EventsPersisted);
        first.Tell(new ToSweep("manager", GetSweepState.Instance), TestActor);
        var named = ExpectMsg<SweepState>();
        Assert.Equal("manager", named.SweepId);
        Assert.Equal(2, named.Trials.Count);
        Assert.Equal(4, Rows(SweepManager.ManagerPersistenceId));
        Assert.Equal(1, Rows(SweepManager.LegacyPersistenceId, "sweep-started.v1"));
        Stop(first);

        // Started again: everything recovers from the manager's own id, and the named sweep from its own rows only.
        var second = Manager("sweeps-2");
        list = Sweeps(second);
        Assert.Equal(["legacy", "dropped", "manager"], list.Sweeps.Select(s => s.SweepId));
        Assert.Equal(["dropped"], list.Cancelled);
        Assert.Empty(list.Quarantined);
        second.Tell(new ToSweep("manager", GetSweepState.Instance), TestActor);
        var again = ExpectMsg<SweepState>();
        Assert.True(again.Started);
        Assert.Equal(named.Fingerprint, again.Fingerprint);
        Assert.Equal(4, Rows(SweepManager.ManagerPersistenceId));
    }

    [Fact]
    public void A_first_submission_that_changes_a_sweep_its_journal_already_holds_is_refused_and_nothing_is_recorded()
    {
        // A local run of the earlier version wrote the coordinator's events only: no submission names the sweep.
        UseJournal("local-run.db");
        var manager = Manager("sweeps");
        var changed = File.ReadAllText(Fixture("legacy.hocon")).Replace("steps = 10", "steps = 11");
        manager.Tell(new SubmitSweep("legacy", SweepDefinitionJson.Write(SweepFiles.Parse(changed, "legacy.hocon", "."))), TestActor);
        Assert.Contains("was started with a different experiment", ExpectMsg<Status.Failure>().Cause.Message);
        Assert.Equal(0, Rows(SweepManager.ManagerPersistenceId));

        manager.Tell(new SubmitSweep("legacy", Definition("legacy")), TestActor);
        Assert.Equal(0, ExpectMsg<Accepted>().EventsPersisted);   // a resume: the sweep had started
        Assert.Equal(1, Rows(SweepManager.ManagerPersistenceId));
    }
}
