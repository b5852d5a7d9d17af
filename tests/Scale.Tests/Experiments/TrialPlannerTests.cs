using System.Collections.Immutable;
using Scale.Actors.Sweeps;
using Scale.Host.Commands;
using Scale.Actors.Reports;
using Scale.Actors.Persistence;
using Scale.Host.Sweeps;
using Scale.Model;
using Scale.Model.Experiments;
using Scale.Tests.Model;

namespace Scale.Tests.Experiments;

public class TrialPlannerTests
{

    [Fact]
    public void The_docs_parameter_table_is_the_planners_table()
    {
        var docs = File.ReadAllText(Repository.File("docs", "sweeps.md"));
        const string begin = "<!-- parameters:begin -->\n", end = "<!-- parameters:end -->";

        int from = docs.IndexOf(begin, StringComparison.Ordinal), to = docs.IndexOf(end, StringComparison.Ordinal);

        Assert.True(from >= 0 && to > from, "docs/sweeps.md has no parameters table between the markers");
        Assert.Equal(TrialPlanner.MarkdownTable(), docs[(from + begin.Length)..to]);
    }

    [Fact]
    public void Every_key_names_a_field_of_the_plan_and_every_experiment_key_is_read_from_experiment_files()
    {
        foreach (var key in TrialPlanner.Keys)
        {
            var type = typeof(TrialPlan);
            foreach (var segment in key.Field.Split('.'))
            {
                var property = type.GetProperty(segment);
                Assert.True(property is not null, $"{key.Key}: {key.Field} is not a path of TrialPlan ({segment} on {type.Name})");
                type = Nullable.GetUnderlyingType(property!.PropertyType) ?? property.PropertyType;
            }
        }
        var spec = ExperimentFiles.Parse("experiment {\n scale { heads-up = 2, ffn-up = 6, depth-every = 1 }\n lora { rank = 4, alpha = 8, targets = [q_proj] }\n}", "t");
        Assert.Equal(new Dictionary<string, string> { ["depth_every"] = "1", ["ffn_up"] = "6", ["heads_up"] = "2", ["lora_alpha"] = "8", ["lora_rank"] = "4", ["lora_targets"] = "q_proj" },
                     spec.Settings);
    }

    [Fact]
    public void A_trials_setting_overrides_the_experiments_which_overrides_the_methods_default()
    {
        var spec = ExperimentFiles.Parse("experiment {\n scale { heads-up = 2, lr-expansion = 3 }\n}", "t");

        var route = TrialPlanner.Plan(spec, "route");
        var wider = TrialPlanner.Plan(spec, "route", new Dictionary<string, string> { ["heads_up"] = "3", ["lr_expansion"] = "5" });
        var preserve = TrialPlanner.Plan(spec, "preserve");
        var depth = TrialPlanner.Plan(spec, "depth");

        Assert.Equal((2, 3.0), (route.Method.Expansion!.HeadsUp, route.Rates.Expansion));
        Assert.Equal((3, 5.0), (wider.Method.Expansion!.HeadsUp, wider.Rates.Expansion));
        Assert.Equal(3.0, preserve.Rates.Expansion);   // scale.lr-expansion sets the expansion rate of every SCALE method of the experiment
        Assert.Equal(MethodKind.Depth, depth.Method.Kind);
        Assert.Null(depth.Method.Expansion);
        Assert.Contains("parameter 'heads_up' must be at least 1, got 0.",
                        Assert.Throws<ArgumentException>(() => TrialPlanner.Plan(spec, "adapt", new Dictionary<string, string> { ["heads_up"] = "0" })).Message);
        Assert.Contains("does not apply to method 'full'",
                        Assert.Throws<ArgumentException>(() => TrialPlanner.Plan(spec, "full", new Dictionary<string, string> { ["heads_up"] = "2" })).Message);
    }

    [Fact]
    public void Each_method_trains_at_its_own_rate_unless_the_experiment_or_the_trial_sets_one()
    {
        var plain = ExperimentFiles.Parse("experiment {\n name = x\n}", "t");
        var shared = ExperimentFiles.Parse("experiment {\n name = x\n continual { learning-rate = 1e-3 }\n}", "t");

        foreach (var method in new[] { "full", "freeze", "depth", "lora", "preserve", "adapt", "route" })
        {
            var kind = TrialPlanner.KindOf(method);
            Assert.Equal(double.Parse(TrialPlanner.MethodDefaults[kind]["lr"], System.Globalization.CultureInfo.InvariantCulture),
                         TrialPlanner.Plan(plain, method).Phase.LearningRate);
            Assert.Equal(1e-3, TrialPlanner.Plan(shared, method).Phase.LearningRate);
            Assert.Equal(7e-3, TrialPlanner.Plan(shared, method, new Dictionary<string, string> { ["lr"] = "7e-3" }).Phase.LearningRate);
        }
        Assert.NotEqual(TrialPlanner.Plan(plain, "full").Phase.LearningRate, TrialPlanner.Plan(plain, "freeze").Phase.LearningRate);
        Assert.Equal(2, TrialPlanner.Plan(plain, "adapt").Method.Expansion!.HeadsUp);
        Assert.Equal(2, TrialPlanner.Plan(plain, "route").Method.Expansion!.HeadsUp);
        Assert.Equal(2, TrialPlanner.Plan(plain, "preserve").Method.Expansion!.HeadsUp);
        Assert.Equal(1, TrialPlanner.Plan(plain, "preserve", new Dictionary<string, string> { ["heads_up"] = "1" }).Method.Expansion!.HeadsUp);
        Assert.Equal("1e-3", shared.Settings["lr"]);
    }
}

/// <summary>Perplexity is lower-is-better: selection, Pareto fronts and forgetting read it the right way.</summary>
public class MetricDirectionTests
{
    private static SweepState TextSweep()
    {
        TrialSpec Trial(string id) => new(id, "preserve", new Dictionary<string, string> { ["seed"] = id[1..] });
        var trials = new[] { Trial("t1"), Trial("t2"), Trial("t3"), Trial("t4") };
        // (retention, acquisition) as held-out perplexity; the base's old-text perplexity is 10.
        var scores = new[] { (10.0, 50.0), (12.0, 20.0), (30.0, 15.0), (31.0, 60.0) };
        var events = new List<ISweepEvent> { new SweepStarted("text", trials, 1, 0) };
        foreach (var (trial, (retention, acquisition)) in trials.Zip(scores))
        {
            events.Add(new TrialStarted(trial.Id, 1, "cpu"));
            events.Add(new TrialCompleted(trial.Id, 1, new TrialMetrics(new Scores(retention, acquisition, retention - 10)) { Metric = ScoreMetric.Perplexity, BaseOld = 10 }));
        }
        return SweepState.Replay(events);
    }

    [Fact]
    public void Best_picks_the_lowest_perplexity_within_the_forgetting_bound()
    {
        var (best, rule) = SweepReport.Best(TextSweep(), maxForgetting: 5);

        Assert.Equal("t2", best!.Trial);   // acquisition 20 beats t1's 50: lower is better
        Assert.Contains("lowest acquisition", rule);
        Assert.True(SweepReport.Rows(TextSweep()).All(r => r.LowerIsBetter));
    }

    [Fact]
    public void The_pareto_front_of_a_text_sweep_keeps_the_low_points()
    {
        var state = TextSweep();
        var points = state.Order.Select(id => ResultPoint.Of("text", state.Trials[id])).ToList();

        var front = ResultPlot.ParetoFront(points).Select(p => p.Trial).ToList();

        Assert.Equal(["t1", "t2", "t3"], front);   // t4 is worse than every other trial on both
        Assert.All(points, p => Assert.Equal(10, p.BaseOld));
        using var dir = new TempDirectory();
        ResultPlot.Draw(points, "text", dir.Combine("pareto.png"));
        Assert.True(new FileInfo(dir.Combine("pareto.png")).Length > 1000);
    }

    [Fact]
    public void A_plot_draws_routed_rows_in_their_trained_methods_colour_and_only_the_rules_asked_for()
    {
        var full = new TrialSpec("f", "full", ImmutableDictionary<string, string>.Empty);
        var routed = new Dictionary<string, RoutedScores>
        {
            ["novelty-auto:0.995:128"] = new(new Scores(0.98, 0.9, 0.01)),
            ["cosine:0.5"] = new(new Scores(0.3, 0.1, 0.69)),
        };
        var state = SweepState.Replay([
            new SweepStarted("s", [full], 1, 0),
            new TrialStarted("f", 1, "cpu"),
            new TrialCompleted("f", 1, new TrialMetrics(new Scores(0.02, 0.95, 0.97)) { Routed = routed }),
        ]);

        var every = ResultPoint.All("s", state).ToList();
        var one = ResultPoint.All("s", state, new HashSet<string> { "cosine:0.5" }).ToList();
        var none = ResultPoint.All("s", state, new HashSet<string>()).ToList();

        Assert.Equal(["f", "f@cosine:0.5", "f@novelty-auto:0.995:128"], every.Select(p => p.Trial).Order(StringComparer.Ordinal));
        Assert.All(every, p => Assert.Equal("full", p.Method));
        Assert.Equal([null, "cosine:0.5", "novelty-auto:0.995:128"], every.OrderBy(p => p.Trial, StringComparer.Ordinal).Select(p => p.Rule));
        Assert.Equal(["f", "f@cosine:0.5"], one.Select(p => p.Trial));
        Assert.Equal((0.3, 0.1), (one[1].Retention, one[1].Acquisition));
        Assert.Equal(["f"], none.Select(p => p.Trial));
        using var dir = new TempDirectory();
        ResultPlot.Draw(every, "s", dir.Combine("pareto.png"));
        Assert.True(new FileInfo(dir.Combine("pareto.png")).Length > 1000);
    }

    [Fact]
    public void Recall_sweeps_still_rank_higher_first()
    {
        var (a, b) = (new TrialSpec("a", "adapt", ImmutableDictionary<string, string>.Empty), new TrialSpec("b", "adapt", ImmutableDictionary<string, string>.Empty));
        var state = SweepState.Replay([
            new SweepStarted("bio", [a, b], 1, 0),
            new TrialStarted("a", 1, "cpu"), new TrialCompleted("a", 1, new TrialMetrics(new Scores(0.9, 0.5, 0.01))),
            new TrialStarted("b", 1, "cpu"), new TrialCompleted("b", 1, new TrialMetrics(new Scores(0.9, 0.7, 0.02)) { Metric = ScoreMetric.Recall }),
        ]);

        Assert.Equal("b", SweepReport.Best(state, 0.05).Best!.Trial);
    }

    [Fact]
    public void A_sweeps_trial_is_planned_once_and_a_changed_copy_is_planned_afresh()
    {
        var sweep = SweepFiles.Load("quickstart");
        var trial = sweep.Trials[1];
        Assert.Same(sweep.PlanFor(trial), sweep.PlanFor(trial));
        Assert.Same(sweep.PlanFor(trial), sweep.PlanFor(trial with { Parameters = new Dictionary<string, string>(trial.Parameters) }));   // the same settings

        var longer = sweep with { CheckpointEvery = sweep.CheckpointEvery + 1 };
        Assert.NotSame(sweep.PlanFor(trial), longer.PlanFor(trial));
        Assert.Equal(sweep.CheckpointEvery + 1, longer.PlanFor(trial).CheckpointEvery);
    }
}
