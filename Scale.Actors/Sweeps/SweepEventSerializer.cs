using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Serialization;

namespace Scale.Actors.Sweeps;

/// <summary>
/// Persisted sweep events in an explicit, versioned format: a stable manifest per event ("trial-started.v1")
/// and a JSON body, never a CLR type name, so renaming a type or an assembly cannot break the recovery of a
/// journal written before. A new version of an event gets a new manifest and a reader for the old one.
/// </summary>
/// <summary>A coordinator snapshot whose body could not be read: recovery discards it and replays the events.</summary>
internal sealed record UnreadableSnapshot(string Reason);

/// <summary>A coordinator snapshot: the state as plain data (trials in sweep order).</summary>
internal sealed record SweepSnapshot(string SweepId, int MaxConcurrent, int RetryBudget, IReadOnlyList<TrialState> Trials)
{
    public string? Fingerprint { get; init; }
    public SchedulerSpec? Scheduler { get; init; }
    /// <summary>Each trial's planned steps; absent in snapshots taken before plans were sent.</summary>
    public IReadOnlyDictionary<string, long>? PlannedSteps { get; init; }

    public static SweepSnapshot Of(SweepState state)
        => new(state.SweepId!, state.MaxConcurrent, state.RetryBudget, state.Order.Select(id => state.Trials[id]).ToList())
        {
            Fingerprint = state.Fingerprint, Scheduler = state.Scheduler, PlannedSteps = state.PlannedSteps.IsEmpty ? null : state.PlannedSteps,
        };

    public SweepState ToState() => SweepState.Empty with
    {
        SweepId = SweepId, MaxConcurrent = MaxConcurrent, RetryBudget = RetryBudget, Fingerprint = Fingerprint, Scheduler = Scheduler,
        Order = Trials.Select(t => t.Spec.Id).ToImmutableList(),
        Trials = Trials.ToImmutableDictionary(t => t.Spec.Id),
        PlannedSteps = PlannedSteps?.ToImmutableDictionary() ?? ImmutableDictionary<string, long>.Empty,
    };
}

/// <summary>
/// The first score schema (v1 events and messages) brought to the current one: the score fields of a score point, of a
/// trial's metrics and of each routed row moved, as they were, into one nested <c>scores</c> object
/// (<see cref="Scale.Model.Experiments.Scores"/>). A body without them then lacks what the current form requires, and is
/// refused as before.
/// </summary>
internal static class ScoresV1
{
    private static readonly string[] Fields = ["retention", "acquisition", "forgetting", "retention_first_token", "acquisition_first_token"];

    public static void Point(JsonNode? node)
    {
        if (node is not JsonObject o || o.ContainsKey("scores")) return;
        var scores = new JsonObject();
        foreach (var field in Fields)
            if (o.Remove(field, out var value)) scores[field] = value;
        if (scores.Count > 0) o["scores"] = scores;
    }

    public static void Metrics(JsonNode? metrics)
    {
        Point(metrics);
        if (metrics?["routed"] is JsonObject routed)
            foreach (var (_, row) in routed) Point(row);
    }

    /// <summary>A snapshot (a coordinator's in the journal, a sweep's state on the wire): each trial's metrics and curve.</summary>
    public static void Snapshot(JsonNode body)
    {
        foreach (var trial in (body["trials"] as JsonArray ?? []).OfType<JsonObject>())
        {
            Metrics(trial["metrics"]);
            foreach (var point in trial["curve"] as JsonArray ?? []) Point(point);
        }
    }
}

internal sealed class SweepEventSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    /// <summary>Akka serializer id, unique within the actor system (ids below 100 are Akka's own).</summary>
    public const int Id = 7301;

    /// <summary>The JSON form of every persisted event and of every message between nodes (see Cluster.WireSerializer).</summary>
    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>
    /// What reading uses: <see cref="Json"/>, and a body must name every field its record requires and give null to none
    /// that may not hold it, so that a row or a message that parses but is not the event (a <c>{}</c>, a field lost to a
    /// schema change, a peer's null) is refused as unreadable instead of entering the state half-empty.
    /// </summary>
    internal static readonly JsonSerializerOptions Strict = new(Json) { RespectNullableAnnotations = true, RespectRequiredConstructorParameters = true };

    private static readonly Dictionary<Type, string> Manifests = new()
    {
        [typeof(SweepStarted)] = "sweep-started.v1",
        [typeof(TrialStarted)] = "trial-started.v1",
        [typeof(TrialCheckpointed)] = "trial-checkpointed.v1",
        [typeof(TrialScored)] = "trial-scored.v2",
        [typeof(TrialCompleted)] = "trial-completed.v2",
        [typeof(TrialRetrying)] = "trial-retrying.v1",
        [typeof(TrialFailed)] = "trial-failed.v1",
        [typeof(TrialRequeued)] = "trial-requeued.v1",
        [typeof(TrialPaused)] = "trial-paused.v1",
        [typeof(TrialPromoted)] = "trial-promoted.v1",
        [typeof(TrialStopped)] = "trial-stopped.v1",
        [typeof(SweepSnapshot)] = "sweep-snapshot.v2",
        [typeof(Cluster.SweepSubmitted)] = "sweep-submitted.v1",
        [typeof(Cluster.SweepCancelled)] = "sweep-cancelled.v1",
    };

    private static readonly Dictionary<string, Type> Types = Manifests.ToDictionary(m => m.Value, m => m.Key);

    /// <summary>Manifests of earlier versions, with the type they now read as and how their body is brought to the current form (<see cref="ScoresV1"/>).</summary>
    private static readonly Dictionary<string, (Type Type, Action<JsonNode> Migrate)> Earlier = new()
    {
        ["trial-scored.v1"] = (typeof(TrialScored), body => ScoresV1.Point(body["point"])),
        ["trial-completed.v1"] = (typeof(TrialCompleted), body => ScoresV1.Metrics(body["metrics"])),
        ["sweep-snapshot.v1"] = (typeof(SweepSnapshot), ScoresV1.Snapshot),
    };

    public override int Identifier => Id;

    public override string Manifest(object o)
        => Manifests.TryGetValue(o.GetType(), out var manifest)
            ? manifest
            : throw new ArgumentException($"{o.GetType().Name} is not a persisted sweep event.");

    public override byte[] ToBinary(object obj) => JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Json);

    /// <summary>The "sweep_id" a damaged body still names, if it parses that far.</summary>
    private static string? SweepIdIn(byte[] bytes)
    {
        try
        {
            return System.Text.Json.Nodes.JsonNode.Parse(bytes)?["sweep_id"]?.GetValue<string>();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    public override object FromBinary(byte[] bytes, string manifest)
    {
        Action<JsonNode>? migrate = null;
        if (!Types.TryGetValue(manifest, out var type))
        {
            if (!Earlier.TryGetValue(manifest, out var earlier))
                throw new System.Runtime.Serialization.SerializationException(
                    $"Unknown sweep event manifest '{manifest}': the journal was written by a newer Scale, or is damaged.");
            (type, migrate) = earlier;
        }
        try
        {
            if (migrate is not null)
            {
                var body = JsonNode.Parse(bytes) ?? throw new JsonException("empty body");
                migrate(body);
                return body.Deserialize(type, Strict) ?? throw new JsonException("empty body");
            }
            return JsonSerializer.Deserialize(bytes, type, Strict)
                   ?? throw new JsonException("empty body");
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            // A snapshot is only a shortcut: an unreadable one is offered as such, and the coordinator replays the events instead.
            if (type == typeof(SweepSnapshot)) return new UnreadableSnapshot($"{manifest}: {e.Message}");
            // The sweep manager's journal holds every sweep's submission: one damaged row must cost that sweep, not all of them.
            if (type == typeof(Cluster.SweepSubmitted) || type == typeof(Cluster.SweepCancelled))
                return new Cluster.UnreadableManagerEvent(manifest, SweepIdIn(bytes), e.Message);
            throw new System.Runtime.Serialization.SerializationException($"Unreadable sweep event '{manifest}': {e.Message}", e);
        }
    }
}
