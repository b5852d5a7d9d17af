using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;

namespace Scale.Actors.Persistence;

/// <summary>
/// Reads sweeps' states from the journal without changing it: the events are replayed through Akka.Persistence.Query
/// in an actor system that has only the read journal, so no coordinator is started and no lock is taken.
/// </summary>
internal static class SweepJournal
{
    public static async Task<SweepState> Read(string dataDirectory, string sweep)
        => (await ReadAll(dataDirectory, [sweep]))[0];

    /// <summary>
    /// The sweeps' states from the journal. A sweep whose journal holds an event that cannot be read is refused with the
    /// reason, or, given <paramref name="quarantined"/>, recorded there and left out (the others are read).
    /// </summary>
    public static async Task<IReadOnlyList<SweepState>> ReadAll(string dataDirectory, IReadOnlyList<string> sweeps, IDictionary<string, string>? quarantined = null)
    {
        var database = SweepPaths.DatabaseFile(dataDirectory);
        if (!File.Exists(database))
            throw new ArgumentException(sweeps.Count == 1
                ? $"No sweep '{sweeps[0]}' in {dataDirectory}: it has no sweeps yet ({database} does not exist)."
                : $"No sweeps in {dataDirectory} ({database} does not exist).");
        var config = AkkaDefaults.Config("WARNING").WithFallback(PersistenceConfig.SqliteReadOnly(database));
        using var system = Akka.Actor.ActorSystem.Create("scale-read", config);
        var states = new List<SweepState>();
        foreach (var sweep in sweeps)
        {
            SweepState state;
            try
            {
                state = await SweepReadModel.ReadAsync(system, sweep);
            }
            catch (Exception e) when (SweepCoordinator.Unreadable(e) is { } unreadable)
            {
                var why = $"its journal holds an event that cannot be read: {unreadable.Message}";
                if (quarantined is null) throw new ArgumentException($"Sweep '{sweep}' is quarantined: {why}");
                quarantined[sweep] = why;
                continue;
            }
            if (!state.Started)
            {
                var known = SweepPaths.KnownSweeps(dataDirectory);
                throw new ArgumentException($"No sweep '{sweep}' in {dataDirectory}" + (known.Count > 0 ? $"; known: {string.Join(", ", known)}." : "."));
            }
            states.Add(state);
        }
        await system.Terminate();
        return states;
    }
}
