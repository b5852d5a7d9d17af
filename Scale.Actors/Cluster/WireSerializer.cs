using System.Text.Json;
using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Serialization;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Cluster;

/// <summary>
/// The messages that cross the network between Scale's nodes, in an explicit, versioned format: a stable
/// manifest per message ("work-granted.v1") and a JSON body, never a CLR type name, so that nodes of one
/// release understand each other whatever the assemblies are called. A coordinator's state travels as its
/// snapshot. <see cref="ToSweep"/> carries its inner message with that message's own manifest.
/// </summary>
internal sealed class WireSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int Id = 7302;

    private static JsonSerializerOptions Json => SweepEventSerializer.Json;
    /// <summary>Reading refuses a message with a required field missing or null (a peer's <c>RequestWork</c> without a trainer).</summary>
    private static JsonSerializerOptions Strict => SweepEventSerializer.Strict;

    /// <summary>Every message type this serializer carries, with its manifest; the HOCON bindings are made from this list.</summary>
    public static readonly IReadOnlyDictionary<Type, string> Manifests = new Dictionary<Type, string>
    {
        [typeof(StartSweep)] = "start-sweep.v1",
        [typeof(RequestWork)] = "request-work.v1",
        [typeof(ReportCheckpoint)] = "report-checkpoint.v1",
        [typeof(ReportScores)] = "report-scores.v2",
        [typeof(ReportCompleted)] = "report-completed.v2",
        [typeof(ReportFailed)] = "report-failed.v1",
        [typeof(TrainerLost)] = "trainer-lost.v1",
        [typeof(RequeueOrphans)] = "requeue-orphans.v1",
        [typeof(RequeueLostNodes)] = "requeue-lost-nodes.v1",
        [typeof(WorkGranted)] = "work-granted.v1",
        [typeof(NoWorkAvailable)] = "no-work.v1",
        [typeof(Accepted)] = "accepted.v1",
        [typeof(AttemptSuperseded)] = "attempt-superseded.v1",
        [typeof(TrialStopRequested)] = "trial-stop-requested.v1",
        [typeof(GetSweepState)] = "get-sweep-state.v1",
        [typeof(SweepState)] = "sweep-state.v2",
        [typeof(SubmitSweep)] = "submit-sweep.v1",
        [typeof(ToSweep)] = "to-sweep.v1",
        [typeof(GetSweeps)] = "get-sweeps.v1",
        [typeof(SweepList)] = "sweep-list.v1",
        [typeof(ReportSweepUnprepared)] = "report-sweep-unprepared.v1",
        [typeof(CancelSweep)] = "cancel-sweep.v1",
        // A failed ask's answer: its kind and message, never an exception's type name (Akka's own form names one: GuardedMiscSerializer).
        [typeof(Status.Failure)] = "failure.v1",
    };

    private static readonly Dictionary<string, Type> Types = Manifests.ToDictionary(m => m.Value, m => m.Key);

    /// <summary>Manifests of the release before, read as the current type after bringing their body to the current form.</summary>
    private static readonly Dictionary<string, (string Current, Action<JsonNode> Migrate)> Earlier = new()
    {
        ["report-scores.v1"] = ("report-scores.v2", body => ScoresV1.Point(body["point"])),
        ["report-completed.v1"] = ("report-completed.v2", body => ScoresV1.Metrics(body["metrics"])),
        ["sweep-state.v1"] = ("sweep-state.v2", ScoresV1.Snapshot),
    };

    public override int Identifier => Id;

    public override string Manifest(object o)
        => Manifests.TryGetValue(o.GetType(), out var manifest) ? manifest : throw new ArgumentException($"{o.GetType().Name} is not a Scale wire message.");

    public override byte[] ToBinary(object obj) => JsonSerializer.SerializeToUtf8Bytes(ToNode(obj), Json);

    public override object FromBinary(byte[] bytes, string manifest)
    {
        try
        {
            return FromNode(JsonNode.Parse(bytes) ?? throw Damaged(manifest, "empty body"), manifest);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NotSupportedException or ArgumentException)
        {
            throw Damaged(manifest, e.Message);
        }
    }

    private static JsonNode ToNode(object obj) => obj switch
    {
        SweepState state => JsonSerializer.SerializeToNode(SweepSnapshot.Of(state), Json)!,
        GetSweepState => new JsonObject(),
        Status.Failure failure => new JsonObject
        {
            ["kind"] = failure.Cause switch
            {
                ArgumentException => "argument", TimeoutException => "timeout", InvalidOperationException => "invalid-operation", _ => "other",
            },
            ["message"] = failure.Cause?.Message ?? "failed",
        },
        ToSweep to => new JsonObject
        {
            ["sweep_id"] = to.SweepId,
            ["manifest"] = Manifests.TryGetValue(to.Message.GetType(), out var inner) ? inner : throw new ArgumentException($"{to.Message.GetType().Name} cannot be sent to a sweep."),
            ["message"] = ToNode(to.Message),
        },
        _ => JsonSerializer.SerializeToNode(obj, obj.GetType(), Json)!,
    };

    private static object FromNode(JsonNode node, string manifest)
    {
        if (Earlier.TryGetValue(manifest, out var earlier))
        {
            earlier.Migrate(node);
            manifest = earlier.Current;
        }
        if (!Types.TryGetValue(manifest, out var type)) throw Damaged(manifest, "unknown manifest: sent by a newer Scale?");
        if (type == typeof(GetSweepState)) return GetSweepState.Instance;
        if (type == typeof(Status.Failure))
        {
            var message = node["message"]?.GetValue<string>() ?? throw Damaged(manifest, "no message");
            return new Status.Failure(node["kind"]?.GetValue<string>() switch
            {
                "argument" => new ArgumentException(message),
                "timeout" => new TimeoutException(message),
                _ => new InvalidOperationException(message),
            });
        }
        if (type == typeof(SweepState))
            return (node.Deserialize<SweepSnapshot>(Strict) ?? throw Damaged(manifest, "null")).ToState();
        if (type == typeof(ToSweep))
            return new ToSweep(node["sweep_id"]?.GetValue<string>() ?? throw Damaged(manifest, "no sweep_id"),
                               FromNode(node["message"] ?? throw Damaged(manifest, "no message"),
                                        node["manifest"]?.GetValue<string>() ?? throw Damaged(manifest, "no inner manifest")));
        return node.Deserialize(type, Strict) ?? throw Damaged(manifest, "null");
    }

    private static System.Runtime.Serialization.SerializationException Damaged(string manifest, string why)
        => new($"Cannot read Scale wire message '{manifest}': {why}.");
}

/// <summary>
/// Takes the place of Akka's default serializer (Newtonsoft JSON with CLR type names, id 1): every message that crosses
/// between Scale's nodes has a serializer of its own (Scale's wire format, or Akka's protobuf ones for its system
/// messages), so nothing needs the default — and a peer must not be able to have this node instantiate a type of its
/// choosing by naming it. A message with no serializer of its own is refused when it is sent, and one that arrives for
/// the default serializer is refused when it is read.
/// </summary>
internal sealed class RefusingDefaultSerializer(ExtendedActorSystem system) : Akka.Serialization.Serializer(system)
{
    /// <summary>The constructor Akka uses for a serializer with settings (the default one's, which this replaces, has some).</summary>
    public RefusingDefaultSerializer(ExtendedActorSystem system, Akka.Configuration.Config settings) : this(system)
    {
    }

    public override int Identifier => 1;

    public override bool IncludeManifest => true;

    public override byte[] ToBinary(object obj)
        => throw new System.Runtime.Serialization.SerializationException(
            $"{obj.GetType().FullName} has no serializer of its own: only Scale's messages and Akka's system messages cross between nodes.");

    public override object FromBinary(byte[] bytes, Type? type)
        => throw new System.Runtime.Serialization.SerializationException(
            $"refused a remote message for the default (type-name) serializer{(type is null ? "" : $" naming {type.FullName}")}: only Scale's messages are read.");
}

/// <summary>
/// Takes the place of Akka's serializer of its small messages (Identify, ActorIdentity, PoisonPill, Status.Success and
/// Status.Failure, remote scopes and routers: "akka-misc", id 16) and does what it does, except that it refuses to read a
/// Status.Failure in Akka's form, which names the exception's type for the reader to instantiate: a peer could name any
/// type with a serialization constructor. Scale's own nodes send failures in Scale's form (<see cref="WireSerializer"/>).
/// </summary>
internal sealed class GuardedMiscSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    /// <summary>Akka's manifest for a Status.Failure (a protobuf naming the exception's type).</summary>
    public const string FailureManifest = "STF";

    private readonly Akka.Remote.Serialization.MiscMessageSerializer inner = new(system);

    public override int Identifier => inner.Identifier;

    public override string Manifest(object o) => inner.Manifest(o);

    public override byte[] ToBinary(object obj) => inner.ToBinary(obj);

    public override object FromBinary(byte[] bytes, string manifest)
        => manifest == FailureManifest
            ? throw new System.Runtime.Serialization.SerializationException(
                "refused a remote Status.Failure in Akka's form (it names an exception type to instantiate): Scale's nodes send failures in Scale's own form.")
            : inner.FromBinary(bytes, manifest);
}

/// <summary>
/// Takes the place of Akka's serializer of system messages ("akka-system-msg", id 22) and does what it does, except that
/// it refuses to read the three that carry an exception in Akka's form (its type named for the reader to instantiate):
/// Failed (a child's failure to its parent), Recreate and Resume (a parent's answer to it). A parent and its children are
/// always on one node here (remote deployment is refused), so none of the three crosses between Scale's nodes; death
/// watch, which does, is read as before.
/// </summary>
internal sealed class GuardedSystemMessageSerializer(ExtendedActorSystem system) : Akka.Serialization.Serializer(system)
{
    private readonly Akka.Remote.Serialization.SystemMessageSerializer inner = new(system);

    public override int Identifier => inner.Identifier;

    public override bool IncludeManifest => inner.IncludeManifest;

    public override byte[] ToBinary(object obj) => inner.ToBinary(obj);

    public override object FromBinary(byte[] bytes, Type type)
        => type == typeof(Akka.Dispatch.SysMsg.Failed) || type == typeof(Akka.Dispatch.SysMsg.Recreate) || type == typeof(Akka.Dispatch.SysMsg.Resume)
            ? throw new System.Runtime.Serialization.SerializationException(
                $"refused a remote {type.Name} system message (it carries an exception type to instantiate, and no parent and child are on two nodes here).")
            : inner.FromBinary(bytes, type);
}
