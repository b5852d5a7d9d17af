using Akka.Actor;
using Scale.Actors.Sweeps;
using Scale.Model.Experiments;

namespace Scale.Tests.Actors;

public sealed class SweepEventSerializerTests : IDisposable
{
    private readonly ActorSystem system = ActorSystem.Create("serializer-tests");
    private readonly SweepEventSerializer serializer;

    public SweepEventSerializerTests() => serializer = new SweepEventSerializer((ExtendedActorSystem)system);

    private static readonly ISweepEvent[] AllEvents =
    [
        new SweepStarted("s1", [new TrialSpec("t1", "route", new Dictionary<string, string> { ["lambda"] = "0.01" })], 2, 3) { Fingerprint = "0123abcd" },
        new TrialStarted("t1", 2, "cpu@node-a"),
        new TrialCheckpointed("t1", 2, 150, "/data/ckpt/t1/150"),
        new TrialCompleted("t1", 2, new TrialMetrics(new Scores(0.91, 0.82, 0.04) { RetentionFirstToken = 0.95 }) { Metric = "recall", BaseOld = 0.95 }),
        new TrialScored("t1", 2, new ScorePoint(50, new Scores(0.5, 0.25, 0.1)) { TotalSteps = 200, Metric = "recall" }),
        new TrialRetrying("t1", 1, "NaN loss at step 31"),
        new TrialFailed("t1", 3, "corrupt checkpoint"),
        new TrialRequeued("t1", 2, "cpu@node-a"),
        new TrialPaused("t1", 2, "infrastructure fault: IOException: No space left on device", new DateTime(2026, 12, 1, 12, 0, 5, DateTimeKind.Utc)),
        new TrialPromoted("t1", 1, new RungDecision(0, 50, 0.61, 0.42, true)),
        new TrialStopped("t2", 1, new RungDecision(1, 150, 0.3, 0.55, false)),
        new SweepStarted("s2", [new TrialSpec("t1", "preserve", new Dictionary<string, string>())], 1, 0)
        {
            Scheduler = new SchedulerSpec { Metric = "acquisition", Mode = "max", GraceSteps = 50, Reduction = 3 },
        },
    ];

    /// <summary>Indexes into <see cref="AllEvents"/> (a theory's parameters must be public types; the events are internal).</summary>
    public static TheoryData<int> Events => new(Enumerable.Range(0, AllEvents.Length));

    [Theory]
    [MemberData(nameof(Events))]
    public void Every_event_round_trips_under_a_versioned_manifest_that_names_no_clr_type(int index)
    {
        var @event = AllEvents[index];
        var manifest = serializer.Manifest(@event);
        var bytes = serializer.ToBinary(@event);

        var back = serializer.FromBinary(bytes, manifest);

        Assert.Matches(@"^[a-z-]+\.v[0-9]+$", manifest);
        Assert.DoesNotContain("Scale", manifest);
        Assert.DoesNotContain("Scale.Actors", System.Text.Encoding.UTF8.GetString(bytes));
        if (@event is SweepStarted started)
        {
            var copy = Assert.IsType<SweepStarted>(back);
            Assert.Equal(started.SweepId, copy.SweepId);
            Assert.Equal(started.Trials[0].Parameters, copy.Trials[0].Parameters);
            Assert.Equal((started.MaxConcurrent, started.RetryBudget, started.Fingerprint), (copy.MaxConcurrent, copy.RetryBudget, copy.Fingerprint));
            Assert.Equal(started.Scheduler, copy.Scheduler);
        }
        else Assert.Equal(@event, back);
    }

    [Fact]
    public void An_unknown_manifest_is_reported_by_name()
    {
        var error = Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serializer.FromBinary([], "trial-exploded.v9"));
        Assert.Contains("trial-exploded.v9", error.Message);
    }

    public void Dispose() => system.Dispose();

    [Fact]
    public void A_sweep_started_event_written_before_fingerprints_still_reads()
    {
        var v1 = "{\"sweep_id\":\"old\",\"trials\":[{\"id\":\"t\",\"method\":\"full\",\"parameters\":{}}],\"max_concurrent\":1,\"retry_budget\":2}"u8.ToArray();

        var started = Assert.IsType<SweepStarted>(serializer.FromBinary(v1, "sweep-started.v1"));

        Assert.Equal(("old", 1, 2), (started.SweepId, started.MaxConcurrent, started.RetryBudget));
        Assert.Null(started.Fingerprint);
    }

    [Fact]
    public void Rows_of_the_first_score_schema_read_as_the_current_one_with_their_score_fields_nested()
    {
        var completed = Assert.IsType<TrialCompleted>(serializer.FromBinary(System.Text.Encoding.UTF8.GetBytes("""
            {"trial_id":"t1","attempt":2,"metrics":{"retention":0.91,"acquisition":0.82,"forgetting":0.04,"retention_first_token":0.5,
             "metric":"recall","base_old":0.95,"trainable_parameters":10,"tokens_per_second":5,"train_seconds":1,"evaluation_seconds":2,"checkpoint_seconds":0,
             "routed":{"cosine":{"retention":0.9,"acquisition":0.7,"forgetting":0.05,"threshold":null,"block_passes":2}}}}
            """), "trial-completed.v1"));
        Assert.Equal(new Scores(0.91, 0.82, 0.04) { RetentionFirstToken = 0.5 }, completed.Metrics.Scores);
        Assert.Equal((0.95, 10L, "recall"), (completed.Metrics.BaseOld!.Value, completed.Metrics.TrainableParameters, completed.Metrics.Metric));
        Assert.Equal(new Scores(0.9, 0.7, 0.05), completed.Metrics.Routed!["cosine"].Scores);
        Assert.Equal(2, completed.Metrics.Routed["cosine"].BlockPasses);

        var scored = Assert.IsType<TrialScored>(serializer.FromBinary(
            """{"trial_id":"t1","attempt":1,"point":{"step":50,"retention":0.5,"acquisition":0.25,"forgetting":0.1,"total_steps":200,"metric":"recall"}}"""u8.ToArray(),
            "trial-scored.v1"));
        Assert.Equal(new ScorePoint(50, new Scores(0.5, 0.25, 0.1)) { TotalSteps = 200, Metric = "recall" }, scored.Point);

        var snapshot = Assert.IsType<SweepSnapshot>(serializer.FromBinary(System.Text.Encoding.UTF8.GetBytes("""
            {"sweep_id":"s","max_concurrent":1,"retry_budget":2,"trials":[
              {"spec":{"id":"t1","method":"full","parameters":{}},"status":"completed","attempt":1,"failed_attempts":0,"trainer":null,"last_checkpoint":null,"failure_reason":null,
               "metrics":{"retention":0.8,"acquisition":0.6,"forgetting":0.15},
               "curve":[{"step":10,"retention":0.9,"acquisition":0.1,"forgetting":0.05}]}]}
            """), "sweep-snapshot.v1"));
        var trial = Assert.Single(snapshot.Trials);
        Assert.Equal(new Scores(0.8, 0.6, 0.15), trial.Metrics!.Scores);
        Assert.Equal(new Scores(0.9, 0.1, 0.05), Assert.Single(trial.Curve).Scores);

        // A v1 row that parses but is not the event is refused as unreadable, as before.
        Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serializer.FromBinary("""{"trial_id":"t1","attempt":1,"metrics":{}}"""u8.ToArray(), "trial-completed.v1"));
    }
}
