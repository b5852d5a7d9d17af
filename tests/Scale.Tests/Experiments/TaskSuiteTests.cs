using Scale.Actors.Reports;
using Scale.Actors.Sweeps;
using Scale.Model;
using Scale.Model.Checkpoints;
using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Experiments;
using Scale.Model.Upscaling;
using Scale.Tests.Model;
using static TorchSharp.torch;

namespace Scale.Tests.Experiments;

/// <summary>
/// Task suites as retention and acquisition: the built-in biography choices, task cards, an experiment's suites scored
/// on every method's final weights (a routed row through the routed model), carried through the journal into results,
/// CSV, JSON and the report, and generation's exact match against a greedy decoder written here.
/// </summary>
public sealed class TaskSuiteTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Biography_choices_ask_every_attribute_with_other_values_of_the_same_attribute_from_the_same_population(bool korean)
    {
        var language = korean ? BioLanguage.Korean : BioLanguage.English;
        var people = new BioWorld(language, 5).DrawPopulation(12);
        var items = BioChoices.Items(people, language, seed: 1);

        var prompts = people.SelectMany(p => BioRenderer.Prompts(p, language)).ToList();
        Assert.Equal(prompts.Count, items.Count);   // 12 people, six attributes each: every population value has others
        foreach (var (item, prompt) in items.Zip(prompts))
        {
            Assert.Equal(prompt.Prompt, item.Context);
            Assert.Equal(BioChoices.Choices, item.Choices!.Count);
            Assert.Equal(item.Choices.Count, item.Choices.Distinct().Count());
            var template = BioRenderer.Templates(language, prompt.Attribute)[0];
            var population = people.Select(p => p[prompt.Attribute]).ToHashSet();
            // Every choice is the rest of the first template's sentence for a value of this attribute in this population; the gold one is the person's own.
            var values = item.Choices.Select(choice => population.Single(v => item.Context + " " + choice == BioRenderer.Fill(template, language, prompt.Person, v))).ToList();
            Assert.Equal(prompt.Answer, values[item.Gold]);
            Assert.DoesNotContain(prompt.Answer, values.Where((_, i) => i != item.Gold));
        }
        Assert.InRange(items.Count(i => i.Gold == 0), 1, items.Count - 1);   // the gold place is drawn, not fixed
        Assert.Equal(items.Select(i => (i.Context, string.Join("|", i.Choices!), i.Gold)), BioChoices.Items(people, language, 1).Select(i => (i.Context, string.Join("|", i.Choices!), i.Gold)));
        Assert.NotEqual(items.Select(i => i.Gold), BioChoices.Items(people, language, 2).Select(i => i.Gold));
    }

    [Fact]
    public void A_task_card_gives_its_name_files_shots_and_metric_with_paths_from_the_card_and_a_bad_card_is_refused_by_name()
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.Combine("cards"));
        File.WriteAllText(dir.Combine("cards", "test.jsonl"), "{\"context\": \"1 + 1 =\", \"choices\": [\"2\", \"3\"], \"gold\": 0}\n");
        File.WriteAllText(dir.Combine("cards", "train.jsonl"), "{\"context\": \"2 + 2 =\", \"choices\": [\"4\", \"5\"], \"gold\": 0}\n");
        var card = dir.Combine("cards", "sums.hocon");
        File.WriteAllText(card, "task {\n  name = sums\n  file = test.jsonl\n  fewshot = train.jsonl\n  shots = 1\n  seed = 7\n  metric = acc_norm\n}\n");

        var spec = TaskCards.Read(card);

        Assert.Equal(new TaskSpec { Name = "sums", File = dir.Combine("cards", "test.jsonl"), FewShotFile = dir.Combine("cards", "train.jsonl"), Shots = 1, Seed = 7, Metric = "acc_norm" }, spec);
        var suite = TaskSuite.Load("old", spec);
        Assert.Equal("acc_norm", suite.Metric);
        Assert.Equal("2 + 2 = 4\n\n1 + 1 =", suite.Prompting.Context(suite.Items[0]));
        foreach (var (text, expected) in new[]
                 {
                     ("task {\n  file = test.jsonl\n  colour = red\n}", "unknown key 'task.colour'"),
                     ("task {\n  name = x\n}", "task.file (the task's JSON Lines file) is required"),
                     ("task {\n  file = missing.jsonl\n}", "no such task file"),
                     ("task {\n  file = test.jsonl\n  metric = f1\n}", "metric must be one of acc, acc_norm, exact_match, got 'f1'"),
                     ("task {\n  file = test.jsonl\n  shots = 2\n}", "2 shots need a fewshot file"),
                     ("task {\n  file = test.jsonl\n  shots = many\n}", "'task.shots' has the wrong type"),
                 })
        {
            File.WriteAllText(card, text);
            var error = Assert.Throws<ArgumentException>(() => TaskCards.Read(card)).Message;
            Assert.Contains(card, error);
            Assert.Contains(expected, error);
        }
        // A multiple-choice task cannot be read by exact match.
        File.WriteAllText(card, "task {\n  file = test.jsonl\n  metric = exact_match\n}");
        Assert.Contains("asks for exact_match, and its items have none", Assert.Throws<ArgumentException>(() => TaskSuite.Load("old", TaskCards.Read(card))).Message);
    }

    [Fact]
    public void An_experiment_names_its_suites_by_the_built_in_choices_cards_and_task_files_relative_to_its_file()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.Combine("sums.jsonl"), "{\"context\": \"1 + 1 =\", \"choices\": [\"2\", \"3\"], \"gold\": 0}\n");
        File.WriteAllText(dir.Combine("sums.hocon"), "task {\n  name = sums-card\n  file = sums.jsonl\n}\n");
        var file = dir.Combine("x.hocon");
        File.WriteAllText(file, ExperimentTests.TinyBio.TrimEnd().TrimEnd('}') + "\n  suites {\n    old = [bio-choice, sums.hocon]\n    new = [bio-choice, sums.jsonl]\n  }\n}\n");

        var spec = ExperimentFiles.Load(file);

        Assert.Equal(["bio-choice", "sums-card"], spec.Suites!.Old.Select(t => t.Name));
        Assert.Equal(["bio-choice", "sums"], spec.Suites.New.Select(t => t.Name));
        Assert.Equal(dir.Combine("sums.jsonl"), spec.Suites.New[1].File);
        Assert.False(spec.Suites.EveryEvaluation);

        File.WriteAllText(file, ExperimentTests.TinyBio.Replace("kind = bio", "kind = text").TrimEnd().TrimEnd('}') + "\n  suites { old = [bio-choice] }\n}\n");
        Assert.Contains("bio-choice asks about biographies; this experiment's data are text", Assert.Throws<ArgumentException>(() => ExperimentFiles.Load(file)).Message);
        File.WriteAllText(file, ExperimentTests.TinyBio.Replace("people = 6", "people = 1").TrimEnd().TrimEnd('}') + "\n  suites { new = [bio-choice] }\n}\n");
        Assert.Contains("bio-choice draws its wrong choices from the other people of new.people, and there is 1", Assert.Throws<ArgumentException>(() => ExperimentFiles.Load(file)).Message);
        File.WriteAllText(file, ExperimentTests.TinyBio.TrimEnd().TrimEnd('}') + "\n  suites { new = [arc.jsonl] }\n}\n");
        Assert.Contains("'arc.jsonl' is neither bio-choice nor a task card or task file", Assert.Throws<ArgumentException>(() => ExperimentFiles.Load(file)).Message);
        // A task file that is malformed is refused before anything runs, with its line.
        File.WriteAllText(dir.Combine("sums.jsonl"), "{\"context\": \"1 + 1 =\", \"choices\": [\"2\", \"3\"], \"gold\": 2}\n");
        File.WriteAllText(file, ExperimentTests.TinyBio.TrimEnd().TrimEnd('}') + "\n  suites { new = [sums.jsonl] }\n}\n");
        Assert.Contains("sums.jsonl:1: \"gold\" is 2", Assert.Throws<ArgumentException>(() => ExperimentFiles.Load(file).CheckFinal()).Message);
    }

    [Fact]
    public void Suites_change_no_training_so_a_sweep_keeps_its_fingerprint_with_them_and_a_cluster_checks_their_files_against_its_data_roots()
    {
        var sweep = SweepFiles.Load("bio-ko");
        Assert.NotNull(sweep.Experiment.Suites);
        Assert.Equal((sweep with { Experiment = sweep.Experiment with { Suites = null } }).Fingerprint, sweep.Fingerprint);

        using var dir = new TempDirectory();
        string root = Directory.CreateDirectory(dir.Combine("data")).FullName, elsewhere = Directory.CreateDirectory(dir.Combine("elsewhere")).FullName;
        var task = new TaskSpec { Name = "secret", File = Path.Combine(elsewhere, "secret.jsonl") };
        var outside = sweep with { Experiment = sweep.Experiment with { Suites = new SuitesSpec { Old = [task] } } };
        Assert.StartsWith($"suites.old 'secret' file '{task.File}' lies outside", Assert.Throws<ArgumentException>(() => Scale.Actors.Cluster.DataRoots.Check(outside, [root])).Message);
        // A submitted definition is checked against the roots before anything it names is read (the file does not even exist).
        var json = Scale.Actors.Cluster.SweepDefinitionJson.Write(outside);
        Assert.Contains("lies outside", Assert.Throws<ArgumentException>(() => Scale.Actors.Cluster.SweepDefinitionJson.Read(json, [root])).Message);
    }

    [Fact]
    public void A_one_item_task_has_no_standard_error_and_every_output_says_so()
    {
        using var task = new TinyBioTask();
        var one = new TaskSuite("old", new TaskSpec { Name = "one", File = "one.jsonl" }, [new TaskItem("Ada was born in", ["London", "Paris"], 0, null)], new TaskPrompting())
            .Score(task.Base, task.Tokenizer);
        Assert.All(one.Metrics, m => Assert.Null(m.StandardError));
        Assert.Matches(@"^[01]\.000$", one.Text);
        var state = SweepState.Replay([new SweepStarted("s", [new TrialSpec("t1", "frozen", new Dictionary<string, string>())], 1, 0), new TrialStarted("t1", 1, "cpu"),
                                       new TrialCompleted("t1", 1, new TrialMetrics(new Scores(0.5, 0.5, 0) { Tasks = [one] }) { Metric = "recall", BaseOld = 0.5 })]);
        Assert.Equal(System.Text.Json.JsonValueKind.Null,
                     System.Text.Json.JsonDocument.Parse(SweepReport.Json(state)).RootElement[0].GetProperty("tasks")[0].GetProperty("metrics")[0].GetProperty("stderr").ValueKind);
        Assert.EndsWith(",", SweepReport.Csv(state).Split('\n')[1].TrimEnd('\r'));   // the stderr column left empty
        Assert.Contains(one.Text, SweepReport.Text(state));
        using var dir = new TempDirectory();
        Assert.Contains("tasks.png", SweepReportFiles.Write(dir.Path, "s", state, dir.Path).Written);
        Assert.Contains("| frozen | old | one | 1 | acc | ", File.ReadAllText(dir.Combine("report.md")));
    }

    [Fact]
    public void Every_method_of_an_experiment_reports_its_suites_on_its_final_weights()
    {
        using var dir = new TempDirectory();
        var spec = ExperimentFiles.Parse(ExperimentTests.TinyBio, "tiny") with
        {
            Methods = ["frozen", "full", "adapt", "route"],
            Suites = new SuitesSpec { Old = [new TaskSpec { Name = "bio-choice" }], New = [new TaskSpec { Name = "bio-choice" }] },
        };

        var result = TwoPhaseExperiment.Run(spec, dir.Path);

        Assert.All(result.Methods, m =>
        {
            Assert.Equal(["old bio-choice acc", "new bio-choice acc"], m.Tasks!.Select(t => t.Label));
            Assert.All(m.Tasks!, t =>
            {
                Assert.Equal(36, t.Items);   // 6 people, six attributes
                Assert.Equal(["acc", "acc_norm"], t.Metrics.Select(x => x.Name));
                Assert.All(t.Metrics, x => Assert.InRange(x.Value, 0, 1));
                Assert.All(t.Metrics, x => Assert.InRange(x.StandardError!.Value, 0, 0.5));
            });
        });
        // The frozen base's scores on the old people are the base's, and no method trained on them.
        var json = System.Text.Json.JsonSerializer.Serialize(result, new System.Text.Json.JsonSerializerOptions { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals });
        var tasks = System.Text.Json.JsonDocument.Parse(json).RootElement.GetProperty("methods")[0].GetProperty("tasks");
        Assert.Equal("old", tasks[0].GetProperty("side").GetString());
        Assert.Equal("stderr", tasks[0].GetProperty("metrics")[0].EnumerateObject().Last().Name);
    }

    [Fact]
    public void A_routed_row_scores_its_suites_through_the_routed_model_and_the_scores_reach_the_journal_results_and_report()
    {
        using var dir = new TempDirectory();
        using var task = new TinyBioTask();
        var suites = new TaskSuites(
            [
                TaskSuite.BioChoice("old", new TaskSpec { Name = "bio-choice" }, task.OldPeople, BioLanguage.English),
                TaskSuite.BioChoice("new", new TaskSpec { Name = "bio-choice" }, task.NewPeople, BioLanguage.English),
            ], task.Tokenizer, EveryEvaluation: false);
        task.Runner.Scoring.Tasks = suites;
        var plan = new TrialPlan(MethodSpec.Preset("adapt"), new PhaseSpec { Steps = 8, Batch = 4, SequenceLength = 32, WarmupSteps = 1, LearningRate = 5e-3 },
                                 Seed: 3, CheckpointEvery: 100) { EvaluateEvery = 4 };
        var curve = new List<(long Step, TrialScores Scores)>();
        var trained = task.Runner.Train(plan, dir.Combine("adapt"), onScores: (step, s) => curve.Add((step, s)));
        var rule = RoutingSpec.Parse("cosine:0.5");

        var plain = task.Runner.Evaluate(plan, trained.FinalCheckpoint);
        var routed = task.Runner.Evaluate(plan.RoutedBy(rule), trained.FinalCheckpoint);

        // Scores during training leave the suites out unless they ask for every evaluation.
        Assert.Equal([0L, 4L, 8L], curve.Select(p => p.Step));
        Assert.All(curve, p => Assert.Null(p.Scores.Scores.Tasks));
        task.Runner.Scoring.Tasks = suites with { EveryEvaluation = true };
        var everyCurve = new List<(long Step, TrialScores Scores)>();
        task.Runner.Train(plan, dir.Combine("adapt-every"), onScores: (step, s) => everyCurve.Add((step, s)));
        Assert.All(everyCurve, p => Assert.Equal(2, p.Scores.Scores.Tasks!.Count));
        Assert.Equal(plain.Scores.Tasks!.Select(t => t.Metrics[0].Value), everyCurve[^1].Scores.Scores.Tasks!.Select(t => t.Metrics[0].Value));
        task.Runner.Scoring.Tasks = suites;
        // The reference: the same weights, routed by the same rule, scored here.
        var model = plan.Method.Build(task.Base, plan.Seed);
        TrialCheckpoint.LoadWeights(trained.FinalCheckpoint!, model);
        var reference = suites.Score(MethodSpec.Route(model, task.Base, rule));
        Assert.Equal(reference.Select(t => t.Metrics.Select(m => m.Value).ToList()), routed.Scores.Tasks!.Select(t => t.Metrics.Select(m => m.Value).ToList()));
        var unrouted = plan.Method.Build(task.Base, plan.Seed);
        TrialCheckpoint.LoadWeights(trained.FinalCheckpoint!, unrouted);
        Assert.Equal(suites.Score(unrouted).Select(t => t.Metrics.Select(m => m.Value).ToList()), plain.Scores.Tasks!.Select(t => t.Metrics.Select(m => m.Value).ToList()));

        // Through the journal's serializer and into `scale results` (table, CSV, JSON) and the report.
        using var system = Akka.Actor.ActorSystem.Create("task-suites");
        var serializer = new SweepEventSerializer((Akka.Actor.ExtendedActorSystem)system);
        var metrics = new TrialMetrics(plain.Scores)
        {
            Metric = "recall", BaseOld = 0.5,
            Routed = new Dictionary<string, RoutedScores> { ["cosine:0.5"] = new RoutedScores(routed.Scores) },
        };
        var completed = new TrialCompleted("t1", 1, metrics);
        var back = Assert.IsType<TrialCompleted>(serializer.FromBinary(serializer.ToBinary(completed), serializer.Manifest(completed)));
        Assert.Equal(plain.Scores.Tasks!.SelectMany(t => t.Metrics), back.Metrics.Scores.Tasks!.SelectMany(t => t.Metrics));
        Assert.Equal(routed.Scores.Tasks!.SelectMany(t => t.Metrics), back.Metrics.Routed!["cosine:0.5"].Scores.Tasks!.SelectMany(t => t.Metrics));
        var state = SweepState.Replay([new SweepStarted("s", [new TrialSpec("t1", "adapt", new Dictionary<string, string>())], 1, 0), new TrialStarted("t1", 1, "cpu"), back]);

        var rows = SweepReport.Rows(state);
        Assert.Equal(2, rows.Count);
        Assert.All(rows, r => Assert.Equal(["old bio-choice acc", "new bio-choice acc"], r.Tasks!.Select(t => t.Label)));
        var text = SweepReport.Text(state);
        Assert.Contains("old bio-choice acc", text);
        Assert.Contains(rows[1].Tasks![1].Text, text.Split('\n').Single(l => l.StartsWith("route cosine:0.5", StringComparison.Ordinal)));
        Assert.Contains(",old bio-choice acc,old bio-choice acc stderr,new bio-choice acc,new bio-choice acc stderr", SweepReport.Csv(state).Split('\n')[0]);
        var json = System.Text.Json.JsonDocument.Parse(SweepReport.Json(state)).RootElement;
        Assert.Equal(routed.Scores.Tasks![0].Metrics[0].Value, json[1].GetProperty("tasks")[0].GetProperty("metrics")[0].GetProperty("value").GetDouble());
        var output = dir.Combine("report");
        Directory.CreateDirectory(output);
        var (written, _, _) = SweepReportFiles.Write(dir.Path, "s", state, output);
        Assert.Contains("tasks.png", written);
        var report = File.ReadAllText(Path.Combine(output, "report.md"));
        Assert.Contains("## Task suites", report);
        Assert.Contains($"| route cosine:0.5 (adapt) | new | bio-choice | {routed.Scores.Tasks[1].Items} | acc_norm |", report);
    }

    [Fact]
    public void Generation_exact_match_equals_a_greedy_decoder_written_here_cut_at_the_stop_sequence()
    {
        using var task = new TinyBioTask();
        var contexts = task.OldPeople.SelectMany(p => BioRenderer.Prompts(p, BioLanguage.English)).Select(p => p.Prompt).Take(12).ToList();
        // The reference: the whole sequence through the model at every step (no cache), argmax, until end-of-text or 32 tokens.
        string Reference(string context)
        {
            var ids = task.Tokenizer.Encode(context).Select(i => (long)i).ToList();
            var generated = new List<int>();
            using var noGrad = no_grad();
            for (int step = 0; step < 32; step++)
            {
                using var logits = task.Base.forward(tensor(ids.ToArray()).unsqueeze(0));
                var last = logits[0, -1].data<float>().ToArray();
                int next = Array.IndexOf(last, last.Max());
                if (next == task.Tokenizer.EndOfTextId) break;
                generated.Add(next);
                ids.Add(next);
            }
            var text = task.Tokenizer.Decode(generated);
            int stop = text.IndexOf('\n');
            return (stop >= 0 ? text[..stop] : text).Trim();
        }
        var answers = contexts.Select(Reference).ToList();
        Assert.Contains(answers, a => a.Length > 0);
        // Half the items carry the reference's own answer, half another item's: exact match is a half only if Scale generates what the reference does.
        var items = contexts.Select((c, i) => new TaskItem(c, null, -1, i % 2 == 0 ? answers[i] + " " : answers[(i + 1) % answers.Count] + " x")).ToList();

        var score = TaskScoring.Score(task.Base, task.Tokenizer, items, new TaskPrompting());

        var exact = Assert.Single(score.Metrics);
        Assert.Equal("exact_match", exact.Name);
        Assert.Equal(0.5, exact.Value);
    }
}
