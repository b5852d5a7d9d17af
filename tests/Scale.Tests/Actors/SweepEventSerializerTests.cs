using Akka.Actor;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

public sealed class SweepEventSerializerTests : IDisposable
{
    private readonly ActorSystem system = ActorSystem.Create("serializer-tests");
    private readonly SweepEventSerializer serializer;

    public SweepEventSerializerTests() => serializer = new SweepEventSerializer((ExtendedActorSystem)system);

    public static TheoryData<ISweepEvent> Events => new()
    {
        new SweepStarted("s1", [new TrialSpec("t1", "route", new Dictionary<string, string> { ["lambda"] = "0.01" })], 2, 3) { Fingerprint = "0123abcd" },
        new TrialStarted("t1", 2, "cpu@node-a"),
        new TrialCheckpointed("t1", 2, 150, "/data/ckpt/t1/150"),
        new TrialCompleted("t1", 2, new TrialMetrics(0.91, 0.82, 0.04)),
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
    };

    [Theory]
    [MemberData(nameof(Events))]
    public void Every_event_round_trips_under_a_versioned_manifest_that_names_no_clr_type(ISweepEvent @event)
    {
        var manifest = serializer.Manifest(@event);
        var bytes = serializer.ToBinary(@event);

        var back = serializer.FromBinary(bytes, manifest);

        Assert.EndsWith(".v1", manifest);
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
}
