using System.Text.Json;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Cluster;

/// <summary>
/// A sweep handed to the cluster: the resolved definition as JSON (experiment included), so that every worker
/// plans the same trials without reading the submitter's files.
/// </summary>
public sealed record SubmitSweep(string SweepId, string Definition);

/// <summary>A message for one sweep's coordinator (a sweep command, or <see cref="GetSweepState"/>), routed by the sweep manager.</summary>
public sealed record ToSweep(string SweepId, object Message);

/// <summary>Asks the sweep manager for every sweep submitted to the cluster.</summary>
public sealed record GetSweeps
{
    public static readonly GetSweeps Instance = new();
}

/// <summary>One submitted sweep: its id and resolved definition (JSON).</summary>
public sealed record SubmittedSweep(string SweepId, string Definition);

/// <summary>The sweeps submitted to the cluster, oldest first.</summary>
public sealed record SweepList(IReadOnlyList<SubmittedSweep> Sweeps)
{
    /// <summary>Sweeps that do not run, by id, with the reason (a journal that cannot be recovered, a definition that no longer validates).</summary>
    public IReadOnlyDictionary<string, string> Quarantined { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// Sweeps some worker could not prepare, by id, with the last worker and reason it reported (since the manager
    /// started). They still run where they can: the reason may be one worker's (a data folder it cannot see).
    /// </summary>
    public IReadOnlyDictionary<string, string> Unprepared { get; init; } = new Dictionary<string, string>();

    /// <summary>Sweeps cancelled by an operator (`scale cancel`): no trainer gets their trials any more.</summary>
    public IReadOnlyList<string> Cancelled { get; init; } = [];
}

/// <summary>An operator's `scale cancel`: the sweep leaves the work queue for good (journaled); its running trials stop.</summary>
public sealed record CancelSweep(string SweepId);

/// <summary>A worker could not prepare a sweep (its base, its data): it goes on with the others and says why.</summary>
public sealed record ReportSweepUnprepared(string SweepId, string Worker, string Reason);

/// <summary>The sweep manager's persisted event: a sweep was submitted (its coordinator journals the rest).</summary>
public sealed record SweepSubmitted(string SweepId, string Definition) : ISweepEvent;

/// <summary>The sweep manager's persisted event: a sweep was cancelled (its own journal is kept as it was).</summary>
public sealed record SweepCancelled(string SweepId) : ISweepEvent;

/// <summary>A resolved sweep definition as JSON and back: what a submitter sends and a worker plans from.</summary>
public static class SweepDefinitionJson
{
    private static readonly JsonSerializerOptions Options = new()
    {
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static string Write(SweepDefinition sweep) => JsonSerializer.Serialize(sweep, Options);

    public static SweepDefinition Read(string json)
    {
        SweepDefinition? sweep;
        try
        {
            sweep = JsonSerializer.Deserialize<SweepDefinition>(json, Options);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"not a sweep definition: {e.Message}", e);
        }
        return (sweep ?? throw new ArgumentException("not a sweep definition: empty")).Validate();
    }
}
