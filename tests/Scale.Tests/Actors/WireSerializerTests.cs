using Scale.Model.Experiments;
using Akka.Actor;
using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

public sealed class WireSerializerTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TrialSpec Spec = new("route-1", "route", new Dictionary<string, string> { ["lr"] = "1e-3", ["router_hard"] = "true" });
    private static readonly TrialMetrics Metrics = new(new Scores(0.5, 0.25, 0.125))
    {
        FinalLoss = 1.5, TrainableParameters = 1234, TokensPerSecond = 99.5,
        RetentionByAttribute = new Dictionary<string, double> { ["city"] = 0.75 },
    };

    private object RoundTrip(object message)
    {
        var serializer = new WireSerializer((ExtendedActorSystem)Sys);
        var manifest = serializer.Manifest(message);
        Assert.DoesNotContain("Scale.", manifest);   // a stable name, never a CLR type name
        return serializer.FromBinary(serializer.ToBinary(message), manifest);
    }

    public static TheoryData<object> Messages() => new()
    {
        new StartSweep("s", [Spec], 2, 1) { Fingerprint = "abc", PlannedSteps = new Dictionary<string, long> { ["route-1"] = 300 } },
        new RequestWork("akka.tcp://scale@127.0.0.1:1/cpu", 2) { Running = ["t1"] },
        new ReportCheckpoint("t1", 2, 50, "/shared/t1/step-50"),
        new ReportFailed("t1", 1, "boom"),
        new RequeueLostNodes(["akka.tcp://scale@127.0.0.1:1"]),
        new NoWorkAvailable(true),
        new Accepted(3),
        new AttemptSuperseded("t1", 1),
        new SubmitSweep("s", "{\"Name\":\"s\"}"),
        new SweepList([new SubmittedSweep("s", "{}")]),
        new SweepList([new SubmittedSweep("s", "{}")]) { Cancelled = ["s"], Next = "s" },
        new GetSweeps { After = "s", Limit = 7 },
    };

    [Theory]
    [MemberData(nameof(Messages))]
    public void Plain_messages_come_back_equal(object message)
    {
        var back = RoundTrip(message);
        Assert.Equal(message.GetType(), back.GetType());
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(message, message.GetType()), System.Text.Json.JsonSerializer.Serialize(back, back.GetType()));
    }

    [Fact]
    public void Nested_trials_metrics_and_states_come_back_whole()
    {
        var granted = (WorkGranted)RoundTrip(new WorkGranted(Spec, 2, new CheckpointRef(50, "/c")));
        var routed = (ToSweep)RoundTrip(new ToSweep("s", new ReportCompleted("t1", 2, Metrics)));
        var state = SweepState.Empty.Apply(new SweepStarted("s", [Spec], 1, 2) { Fingerprint = "f" }).Apply(new TrialStarted("route-1", 1, "w"));
        var stateBack = (SweepState)RoundTrip(state);

        Assert.Equal(Spec.Parameters, granted.Trial.Parameters);
        Assert.Equal(new CheckpointRef(50, "/c"), granted.Checkpoint);
        var report = Assert.IsType<ReportCompleted>(routed.Message);
        Assert.Equal(1.5, report.Metrics.FinalLoss);
        Assert.Equal(0.75, report.Metrics.RetentionByAttribute!["city"]);
        Assert.Same(GetSweepState.Instance, ((ToSweep)RoundTrip(new ToSweep("s", GetSweepState.Instance))).Message);
        Assert.Equal(state.Trials["route-1"], stateBack.Trials["route-1"] with { Spec = state.Trials["route-1"].Spec });
        Assert.Equal("f", stateBack.Fingerprint);
        Assert.Equal(TrialStatus.Running, stateBack.Trials["route-1"].Status);
    }

    [Fact]
    public void A_sweep_list_request_from_before_pages_reads_as_the_first_page()
    {
        var serializer = new WireSerializer((ExtendedActorSystem)Sys);
        var get = Assert.IsType<GetSweeps>(serializer.FromBinary("{}"u8.ToArray(), "get-sweeps.v1"));
        Assert.Equal((null, GetSweeps.DefaultLimit), (get.After, get.Limit));
    }

    [Fact]
    public void An_unknown_manifest_is_a_clear_error()
    {
        var serializer = new WireSerializer((ExtendedActorSystem)Sys);
        var error = Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serializer.FromBinary("{}"u8.ToArray(), "from-the-future.v9"));
        Assert.Contains("from-the-future.v9", error.Message);
    }

    [Theory]
    [InlineData("request-work.v1", "{}")]                                             // a RequestWork without its trainer
    [InlineData("request-work.v1", "{\"trainer_id\": null}")]
    [InlineData("report-checkpoint.v1", "{\"trial_id\": \"t\", \"attempt\": 1, \"step\": 5}")]   // no path
    [InlineData("to-sweep.v1", "{\"sweep_id\": \"s\", \"manifest\": \"request-work.v1\"}")]      // no inner message
    [InlineData("sweep-state.v1", "{}")]
    public void A_message_that_parses_but_lacks_a_required_field_is_refused_as_damaged(string manifest, string body)
    {
        var serializer = new WireSerializer((ExtendedActorSystem)Sys);

        var error = Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serializer.FromBinary(System.Text.Encoding.UTF8.GetBytes(body), manifest));

        Assert.Contains(manifest, error.Message);
    }

    [Theory]
    [InlineData("quickstart")]
    [InlineData("validation")]
    [InlineData("bio-ko")]   // with task suites
    public void A_resolved_sweep_definition_survives_json_with_the_same_fingerprint_and_trials(string builtIn)
    {
        var sweep = SweepFiles.Load(builtIn);
        var back = SweepDefinitionJson.Read(SweepDefinitionJson.Write(sweep));

        Assert.Equal(sweep.Experiment.Suites?.EveryEvaluation, back.Experiment.Suites?.EveryEvaluation);
        Assert.Equal(sweep.Experiment.Suites?.Old.Concat(sweep.Experiment.Suites.New) ?? [], back.Experiment.Suites?.Old.Concat(back.Experiment.Suites.New) ?? []);
        Assert.Equal(sweep.Fingerprint, back.Fingerprint);
        Assert.Equal(sweep.Trials.Select(t => t.Id), back.Trials.Select(t => t.Id));
        Assert.Equal(sweep.CheckpointEvery, back.CheckpointEvery);
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(sweep.PlanFor(sweep.Trials[^1])), System.Text.Json.JsonSerializer.Serialize(back.PlanFor(back.Trials[^1])));
    }

    [Fact]
    public void A_damaged_definition_is_refused_with_a_reason()
        => Assert.Contains("not a sweep definition", Assert.Throws<ArgumentException>(() => SweepDefinitionJson.Read("{\"Name\": 3")).Message);

    [Fact]
    public void Reports_of_the_release_before_the_scores_schema_still_read()
    {
        var serializer = new WireSerializer((ExtendedActorSystem)Sys);
        var completed = Assert.IsType<ReportCompleted>(serializer.FromBinary(
            """{"trial_id":"t1","attempt":1,"metrics":{"retention":0.5,"acquisition":0.25,"forgetting":0.125,"trainable_parameters":3,"tokens_per_second":1,"train_seconds":0,"evaluation_seconds":0,"checkpoint_seconds":0}}"""u8.ToArray(),
            "report-completed.v1"));
        Assert.Equal(new Scores(0.5, 0.25, 0.125), completed.Metrics.Scores);
        var scores = Assert.IsType<ReportScores>(serializer.FromBinary(
            """{"trial_id":"t1","attempt":1,"point":{"step":5,"retention":0.5,"acquisition":0.25,"forgetting":0.125}}"""u8.ToArray(), "report-scores.v1"));
        Assert.Equal(new ScorePoint(5, new Scores(0.5, 0.25, 0.125)), scores.Point);
        // Inside an envelope, as a worker of the release before sends it to a sweep.
        var wrapped = Assert.IsType<ToSweep>(serializer.FromBinary(System.Text.Encoding.UTF8.GetBytes(
            """{"sweep_id":"s","manifest":"report-scores.v1","message":{"trial_id":"t1","attempt":1,"point":{"step":5,"retention":0.5,"acquisition":0.25,"forgetting":0.125}}}"""),
            "to-sweep.v1"));
        Assert.Equal(scores, wrapped.Message);
        Assert.Equal("report-completed.v2", serializer.Manifest(completed));
    }
}
