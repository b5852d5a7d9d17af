using Akka.Actor;
using Akka.Persistence.Query;
using Akka.Persistence.Sql.Query;
using Akka.Streams;
using Akka.Streams.Dsl;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Persistence;

/// <summary>
/// A sweep's state as its journal holds it, read through Akka.Persistence.Query and folded by <see cref="SweepState"/>:
/// no persistent actor is started, so a reader never competes with the coordinator that owns the persistence id.
/// The coordinator never deletes events (snapshots only shorten its own recovery), so the events alone are the whole history.
/// </summary>
internal static class SweepReadModel
{
    public static async Task<SweepState> ReadAsync(ActorSystem system, string sweepId, CancellationToken cancellation = default)
    {
        var journal = PersistenceQuery.Get(system).ReadJournalFor<SqlReadJournal>(SqlReadJournal.Identifier);
        var events = await journal.CurrentEventsByPersistenceId(SweepCoordinator.PersistenceIdOf(sweepId), 0, long.MaxValue)
            .Where(envelope => envelope.Event is not (Cluster.IManagerEvent or Cluster.UnreadableManagerEvent))   // an earlier manager's rows (SweepCoordinator)
            .Select(envelope => envelope.Event as ISweepEvent
                ?? throw new InvalidOperationException($"sweep {sweepId}: the journal holds a {envelope.Event.GetType().Name} at {envelope.SequenceNr}, not a sweep event"))
            .RunWith(Sink.Seq<ISweepEvent>(), system.Materializer()).WaitAsync(cancellation);
        return SweepState.Replay(events);
    }
}
