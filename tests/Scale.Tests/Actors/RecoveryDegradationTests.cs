using Scale.Model.Experiments;
using Akka.Actor;
using Microsoft.Data.Sqlite;
using Scale.Actors.Persistence;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

/// <summary>
/// Recovery that degrades instead of stopping: an unreadable snapshot falls back to replaying the events, and an event
/// that cannot be read quarantines its sweep (said with the reason) while other sweeps in the same journal recover.
/// The damage is done to the real SQLite journal, as a disk or a hand edit would.
/// </summary>
public sealed class RecoveryDegradationTests() : SqliteTestKit("recovery-tests")
{
    private static TrialSpec Trial(string id) => new(id, "preserve", new Dictionary<string, string>());

    /// <summary>A sweep with a few events of each kind, recorded by a coordinator that is then stopped.</summary>
    private SweepState Record(string sweep, int snapshotEvery)
    {
        var coordinator = Sys.ActorOf(SweepCoordinator.Props(sweep, snapshotEvery));
        coordinator.Tell(new StartSweep(sweep, [Trial("t1"), Trial("t2"), Trial("t3")], 2, 1), TestActor);
        ExpectMsg<Accepted>();
        foreach (var trainer in new[] { "w1", "w2" })
        {
            coordinator.Tell(new RequestWork(trainer), TestActor);
            var granted = ExpectMsg<WorkGranted>();
            coordinator.Tell(new ReportCheckpoint(granted.Trial.Id, granted.Attempt, 10, $"/c/{granted.Trial.Id}"), TestActor);
            ExpectMsg<Accepted>();
        }
        coordinator.Tell(new ReportCompleted("t1", 1, new TrialMetrics(new Scores(0.9, 0.8, 0.01))), TestActor);
        ExpectMsg<Accepted>();
        coordinator.Tell(GetSweepState.Instance, TestActor);
        var state = ExpectMsg<SweepState>();
        Watch(coordinator);
        coordinator.Tell(PoisonPill.Instance);
        ExpectTerminated(coordinator);
        return state;
    }

    /// <summary>A state as comparable text (its records hold dictionaries, which compare by reference).</summary>
    private static string Text(SweepState state) => System.Text.Json.JsonSerializer.Serialize(SweepSnapshot.Of(state));

    private long Scalar(string sql)
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(Root, "sweeps.db")};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar());
    }


    /// <summary>Damage as hex: a body that does not parse, and one that parses but is not the record (a schema change, a hand edit).</summary>
    public static TheoryData<string> Damages => new() { "7B6E6F74206A736F6E" /* {not json */, "7B7D" /* {} */ };

    [Theory]
    [MemberData(nameof(Damages))]
    public void An_unreadable_snapshot_is_discarded_and_the_sweep_recovers_from_its_events_answering_what_waited(string damage)
    {
        var before = Record("snap", snapshotEvery: 3);
        // The snapshot store writes after the coordinator asks it to, on its own: wait for the last snapshot (6 events, one
        // every 3) before damaging them all, or recovery might find an undamaged one written after the damage.
        AwaitCondition(() => Scalar("SELECT count(*) FROM snapshot WHERE persistence_id = 'sweep-snap' AND sequence_number = 6") == 1, TimeSpan.FromSeconds(60));
        Assert.True(Execute($"UPDATE snapshot SET snapshot = X'{damage}' WHERE persistence_id = 'sweep-snap'") >= 1);

        var recovered = Sys.ActorOf(SweepCoordinator.Props("snap", 3));
        recovered.Tell(GetSweepState.Instance, TestActor);   // sent before recovery ends: answered after the fallback
        var after = ExpectMsg<SweepState>(TimeSpan.FromSeconds(60));
        recovered.Tell(new RequestWork("w3"), TestActor);
        var granted = ExpectMsg<WorkGranted>();

        Assert.Equal(Text(before), Text(after));
        Assert.Equal("t3", granted.Trial.Id);
        // The damaged snapshots are deleted (the store does it on its own, after the coordinator asks).
        AwaitCondition(() => Scalar($"SELECT count(*) FROM snapshot WHERE snapshot = X'{damage}'") == 0, TimeSpan.FromSeconds(60));
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public async Task An_event_that_cannot_be_read_quarantines_its_sweep_with_the_reason_and_another_sweep_still_recovers(string damage)
    {
        Record("damaged", snapshotEvery: 1000);
        var healthy = Record("healthy", snapshotEvery: 1000);
        Assert.Equal(1, Execute($"UPDATE journal SET message = X'{damage}' WHERE persistence_id = 'sweep-damaged' AND sequence_number = 3"));
        var quarantines = CreateTestProbe();
        Sys.EventStream.Subscribe(quarantines.Ref, typeof(SweepQuarantined));

        var damaged = Sys.ActorOf(SweepCoordinator.Props("damaged"));
        Watch(damaged);
        damaged.Tell(GetSweepState.Instance, TestActor);
        var quarantine = quarantines.ExpectMsg<SweepQuarantined>(TimeSpan.FromSeconds(60));
        ExpectTerminated(damaged);
        var other = Sys.ActorOf(SweepCoordinator.Props("healthy"));
        other.Tell(GetSweepState.Instance, TestActor);
        var state = FishForMessage<SweepState>(_ => true, TimeSpan.FromSeconds(60));

        Assert.Equal("damaged", quarantine.SweepId);
        Assert.Contains("event 3", quarantine.Reason);
        Assert.Contains("cannot be read", quarantine.Reason);
        Assert.Equal(Text(healthy), Text(state));
        // Readers say so too, by the sweep, and read the other sweep.
        var read = await Assert.ThrowsAnyAsync<Exception>(() => SweepReadModel.ReadAsync(Sys, "damaged"));
        Assert.NotNull(SweepCoordinator.Unreadable(read));
        Assert.Equal(Text(healthy), Text(await SweepReadModel.ReadAsync(Sys, "healthy")));
    }
}
