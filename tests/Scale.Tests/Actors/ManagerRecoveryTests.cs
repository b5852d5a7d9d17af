using Akka.Actor;
using Microsoft.Data.Sqlite;
using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

/// <summary>
/// The sweep manager's journal degrades per sweep: a damaged row of it costs the sweep it names (quarantined, said with
/// the reason), never the manager; the other sweeps are listed and answer. The damage is done to the real SQLite journal.
/// </summary>
public sealed class ManagerRecoveryTests() : SqliteTestKit("manager-recovery", new ClusterConfig("127.0.0.1", 0, [], ["seed"]).ToConfig())
{
    private static string Definition(string name) => SweepDefinitionJson.Write(SweepFiles.Parse(
        $"sweep {{\n name = {name}\n experiment {{\n model {{\n hidden-size = 32\n layers = 2\n heads = 2\n ffn = 64\n }}\n }}\n methods = [frozen, full]\n}}", $"{name}.hocon", "."));


    private IActorRef Manager(string name)
    {
        var manager = Sys.ActorOf(SweepManager.Props([Root], TimeSpan.FromMinutes(10)), name);
        return manager;
    }

    private void Stop(IActorRef actor)
    {
        Watch(actor);
        actor.Tell(PoisonPill.Instance);
        ExpectTerminated(actor);
    }

    private const string Empty = "7B7D";                                   // {}: parses, but is no event and names no sweep
    private const string NamesA = "7B2273776565705F6964223A2261227D";      // {"sweep_id":"a"}: names its sweep, but no definition
    private const string NamesC = "7B2273776565705F6964223A2263227D";      // {"sweep_id":"c"}
    private const string Garbage = "7B22737765657F";                       // does not parse

    [Theory]
    [InlineData(Empty, null, "(manager journal row 1)", true)]
    [InlineData(NamesA, null, "a", true)]
    [InlineData(NamesA, NamesC, "a", true)]                                 // a cancellation that still names its sweep still cancels
    [InlineData(NamesA, Garbage, "a,(manager journal row 4)", false)]       // one that names none is reported on its own
    public void A_damaged_row_of_the_managers_journal_costs_the_sweep_it_names_and_the_others_run(string damageA, string? damageC, string quarantined, bool cCancelled)
    {
        var first = Manager("sweeps-1");
        foreach (var name in new[] { "a", "b", "c" })
        {
            first.Tell(new SubmitSweep(name, Definition(name)), TestActor);
            ExpectMsg<Accepted>();
        }
        first.Tell(new CancelSweep("c"), TestActor);
        ExpectMsg<Accepted>();
        Stop(first);
        // a's submission (row 1) loses its body; c's cancellation (row 4) too, where asked.
        Assert.Equal(1, Execute($"UPDATE journal SET message = X'{damageA}' WHERE persistence_id = '{SweepManager.ManagerPersistenceId}' AND sequence_number = 1"));
        if (damageC is not null) Assert.Equal(1, Execute($"UPDATE journal SET message = X'{damageC}' WHERE persistence_id = '{SweepManager.ManagerPersistenceId}' AND sequence_number = 4"));

        var second = Manager("sweeps-2");
        second.Tell(GetSweeps.Instance, TestActor);
        var list = ExpectMsg<SweepList>();

        Assert.Equal(quarantined.Split(',').Order(), list.Quarantined.Keys.Order());
        Assert.All(list.Quarantined.Values, why => Assert.Contains("in the sweep manager's journal cannot be read", why));
        Assert.Contains("b", list.Sweeps.Select(s => s.SweepId));
        second.Tell(new ToSweep("b", GetSweepState.Instance), TestActor);
        Assert.True(ExpectMsg<SweepState>().Started);   // b's coordinator recovered and answers
        Assert.Equal(cCancelled, list.Cancelled.Contains("c"));
        if (quarantined.Split(',').Contains("a"))
        {
            // The name of a damaged submission is not taken by a new one.
            second.Tell(new SubmitSweep("a", Definition("a")), TestActor);
            Assert.Contains("is quarantined on this cluster", ExpectMsg<Status.Failure>().Cause.Message);
        }
    }
}
