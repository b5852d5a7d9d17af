using Scale.Model.Experiments;
using Scale.Model.Training;
using Scale.Actors.Sweeps;
using Scale.Model;
using Scale.Model.Upscaling;

namespace Scale.Tests.Actors;

public class SweepFileTests
{
    private static SweepDefinition Parse(string body)
        => SweepFiles.Parse($"sweep {{\n name = s1\n experiment {{\n model {{\n hidden-size = 32\n layers = 2\n heads = 2\n ffn = 64\n }}\n }}\n{body}\n}}", "my-sweep.hocon", ".");

    private static string Error(string body) => Assert.Throws<ArgumentException>(() => Parse(body)).Message;

    [Fact]
    public void The_built_in_sweeps_load_with_every_method_and_a_scale_grid()
    {
        Assert.Equal(["asha-search", "bio", "bio-ko", "bio-qa", "quickstart", "text-de", "text-ko", "text-validation", "validation"], SweepFiles.BuiltIn);
        var asha = SweepFiles.Load("asha-search");
        Assert.Equal((16, "acquisition", 25), (asha.Trials.Count, asha.Scheduler!.Metric, asha.Scheduler.GraceSteps));
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(SweepFiles.Load("quickstart").Experiment),
                     System.Text.Json.JsonSerializer.Serialize(asha.Experiment));   // the quick start's experiment, so its base is shared
        var validation = SweepFiles.Load("validation");
        Assert.Equal(MethodSpec.PresetNames.Where(m => m != "route").Order(), validation.Trials.Select(t => t.Method).Distinct().Order());
        Assert.Equal(19, validation.Trials.Count);   // defaults, lower rates for each baseline, LoRA at rank 64 and 128
        Assert.Equal([ExpansionSpec.DefaultRouting.ToString(), "cosine:0.5"], validation.Routing);
        Assert.Equal(2, validation.Experiment.Old.WorldSeed);   // the validation pair, not bio's test pair
        Assert.Equal(2, validation.Experiment.New.WorldSeed);
        var quick = SweepFiles.Load("quickstart");
        var bio = SweepFiles.Load("bio");

        // Every method but route and LoRA trains (LoRA learned nothing on the validation pair at any rate tried); route's
        // rows come from the routing axis over the trained SCALE trials.
        Assert.Equal(MethodSpec.PresetNames.Where(m => m is not ("route" or "lora")).Order(), quick.Trials.Select(t => t.Method).Distinct().Order());
        Assert.Equal(["novelty-auto:0.995:128", "cosine:0.5"], quick.Routing);
        Assert.Contains(quick.Trials, t => t.Parameters.ContainsKey("heads_up"));
        Assert.Equal(quick.Trials.Count, quick.Trials.Select(t => t.Id).Distinct().Count());
        Assert.Equal(200, bio.Experiment.Old.People);
        Assert.Equal(MethodSpec.PresetNames.Order(), bio.Trials.Select(t => t.Method).Distinct().Order());
        Assert.Equal(validation.Trials.Count + 1, bio.Trials.Count);   // the validation sweep's design, and a route trial
        Assert.Equal(quick.Trials.Select(t => t.Id), SweepFiles.Load("quickstart").Trials.Select(t => t.Id));   // stable ids
    }

    [Fact]
    public void A_grid_is_counted_before_it_is_expanded_and_refused_above_max_trials_unless_the_file_raises_it()
    {
        static string Grid(int a, int b, string more = "") => $$"""
            search {
              g {
                methods = [preserve]
                grid { lr = [{{string.Join(", ", Enumerable.Range(1, a).Select(i => $"{i}e-4"))}}], warmup = [{{string.Join(", ", Enumerable.Range(0, b))}}] }
              }
            }
            {{more}}
            """;

        Assert.Equal(1000, Parse(Grid(40, 25)).Trials.Count);   // exactly the default cap
        var refused = Assert.Throws<ArgumentException>(() => Parse(Grid(41, 25)));
        Assert.Contains("1,025 trials, above max-trials (1,000)", refused.Message);
        Assert.Contains("max-trials = 1025", refused.Message);
        Assert.Equal(1025, Parse(Grid(41, 25, "max-trials = 1025")).Trials.Count);
        // A grid of 10^12 points is refused from its size alone, without building it.
        var huge = new SearchSpace { Grid = Enumerable.Range(0, 6).ToDictionary(i => $"k{i}", _ => (IReadOnlyList<string>)Enumerable.Range(0, 100).Select(v => $"{v}").ToList()) };
        Assert.Equal(1_000_000_000_000, huge.Size);
        var sweep = Parse(Grid(2, 2));
        Assert.Contains("above its max-trials", Assert.Throws<ArgumentException>(() => (sweep with { MaxTrials = 3 }).Validate()).Message);
    }

    [Fact]
    public void Grid_and_random_searches_expand_to_planned_trials()
    {
        var sweep = Parse("""
            methods = [full]
            search {
              wide {
                methods = [route]
                fixed { w12_modules = "o_proj,down_proj" }
                grid { heads_up = [1, 2], w12_layers = ["1"] }
                random { lr { min = 1e-4, max = 1e-2, log = true } }
                samples = 2
                seed = 3
              }
            }
            max-concurrent = 2
            retry-budget = 3
            checkpoint-every = 5
            """);

        Assert.Equal(5, sweep.Trials.Count);
        Assert.Equal((2, 3, 5), (sweep.MaxConcurrent, sweep.RetryBudget, sweep.CheckpointEvery));
        var route = sweep.Trials.First(t => t.Method == "route" && t.Parameters["heads_up"] == "2");
        var plan = sweep.PlanFor(route);
        Assert.Equal(2, plan.Method.Expansion!.HeadsUp);
        var w12 = plan.Method.Expansion.Train.Single(r => r.Block == ExpansionBlock.W12);
        Assert.Equal((1, 1), (w12.FirstLayer!.Value, w12.LastLayer!.Value));
        Assert.Equal(["o_proj", "down_proj"], w12.Modules!);
        Assert.InRange(plan.Phase.LearningRate, 1e-4, 1e-2);
        Assert.Equal(2, sweep.Trials.Where(t => t.Method == "route").Select(t => t.Parameters["lr"]).Distinct().Count());
    }

    [Theory]
    [InlineData("methods = [full]\nmax-concurent = 2", "unknown key 'sweep.max-concurent'")]
    [InlineData("methods = [full]\nmax-concurrent = lots", "'sweep.max-concurrent' has the wrong type")]
    [InlineData("methods = [full]\nmax-concurrent = 0", "'sweep.max-concurrent' must be at least 1")]
    [InlineData("methods = [fulll]", "unknown method 'fulll'")]
    [InlineData("methods = [full]\nsearch { a { methods = [full], grid { heads_up = [2] } } }", "'sweep.search.a': trial full (heads_up=2): parameter 'heads_up'")]
    [InlineData("search { a { methods = [adapt], grid { w12_layers = [\"0-5\"] } } }", "last layer 5 is outside 0..1")]
    [InlineData("search { a { methods = [preserve], grid { w12_modules = [q_proj] } } }", "does not apply to method 'preserve'")]
    [InlineData("search { a { methods = [route], grid { lr_expansion = [abc] } } }", "parameter 'lr_expansion' must be a number")]
    [InlineData("search { a { methods = [route], grid { lr = [-1] } } }", "parameter 'lr' must be above 0")]
    [InlineData("search { a { methods = [route], grid { heads_up = [0] } } }", "parameter 'heads_up' must be at least 1")]
    [InlineData("search { a { methods = [route], grid { dropout = [0.1] } } }", "unknown parameter 'dropout'")]
    [InlineData("search { a { methods = [route], random { lr { min = 1, max = 0.1 } } } }", "min 1 is above max 0.1")]
    [InlineData("search { a { methods = [route], random { lr { min = 1 } } } }", "needs min and max")]
    [InlineData("", "the sweep has no trials")]
    [InlineData("search { a { methods = [route], grid { routing = [eyes] } } }", "parameter 'routing' is not a routing rule: unknown routing rule 'eyes'")]
    [InlineData("search { a { methods = [route], grid { init = [\"1\"] } } }", "parameter 'init' must be one of svd, normal")]
    [InlineData("search { a { methods = [route], grid { preserved_layers = [2] } } }", "'preserved_layers' 2 leaves no layer for W12")]
    [InlineData("search { a { methods = [adapt], grid { routing = [cosine] } } }", "does not apply to method 'adapt'")]
    [InlineData("search { a { methods = [adapt], fixed { preserved_layers = 1, w12_last = 1 } } }", "set only one of 'w12_layers', 'w12_last' and 'preserved_layers'")]
    [InlineData("search { a { methods = [route], grid { w12_last = [3] } } }", "'w12_last' 3 is above the base's 2 layers")]
    [InlineData("search { a { methods = [preserve], fixed { frozen_blocks = \"head_up,w99\" } } }", "unknown block 'w99'")]
    [InlineData("methods = [full]\nlock-step = sometimes", "'sweep.lock-step' has the wrong type")]
    [InlineData("methods = [full]\nscheduler { kind = asha, metric = acquisition, grace-steps = 10 }", "'sweep.scheduler.grace-steps': a scheduler ranks the scores during training: set sweep.evaluate-every too")]
    [InlineData("methods = [full]\nevaluate-every = 4\nscheduler { kind = asha, metric = acquisition, grace-steps = 10 }", "10 is not a multiple of evaluate-every (4)")]
    [InlineData("methods = [full]\nevaluate-every = 5\nscheduler { kind = hyperband, metric = acquisition, grace-steps = 10 }", "'sweep.scheduler.kind': 'hyperband' is not a scheduler")]
    [InlineData("methods = [full]\nevaluate-every = 5\nscheduler { kind = asha, metric = loss, grace-steps = 10 }", "'sweep.scheduler.metric': 'loss' is not one of acquisition, retention")]
    [InlineData("methods = [full]\nevaluate-every = 5\nscheduler { kind = asha, metric = acquisition, grace-steps = 10, mode = up }", "'sweep.scheduler.mode': 'up' must be max or min")]
    [InlineData("methods = [full]\nevaluate-every = 5\nscheduler { kind = asha, metric = acquisition, grace-steps = 10, reduction = 1 }", "'sweep.scheduler.reduction': must be at least 2")]
    [InlineData("methods = [full]\nevaluate-every = 5\nscheduler { kind = asha, metric = acquisition, grace-steps = 10, patience = 3 }", "unknown key 'sweep.scheduler.patience'")]
    public void Bad_sweep_files_are_rejected_naming_the_file_the_key_and_the_reason(string body, string expected)
    {
        var message = Error(body);
        Assert.StartsWith("my-sweep.hocon: ", message);
        Assert.Contains(expected, message);
    }

    [Fact]
    public void A_scheduler_block_and_lock_step_are_read_with_their_defaults()
    {
        var asha = Parse("methods = [preserve]\nevaluate-every = 5\nlock-step = off\nscheduler { kind = asha, metric = forgetting, grace-steps = 10 }");
        var plain = Parse("methods = [preserve]");

        Assert.Equal(new SchedulerSpec { Metric = "forgetting", Mode = "min", GraceSteps = 10, Reduction = 3 }, asha.Scheduler);   // less forgetting is better
        Assert.False(asha.LockStep);
        Assert.Equal(asha.Scheduler, asha.StartCommand.Scheduler);
        Assert.True(plain.LockStep);
        Assert.Null(plain.Scheduler);
        Assert.NotEqual(plain.Fingerprint, (plain with { Scheduler = asha.Scheduler, EvaluateEvery = 5 }).Fingerprint);
    }

    [Fact]
    public void Route_and_collaborative_adaptation_knobs_map_to_the_plan()
    {
        var sweep = Parse("""
            search {
              knobs {
                methods = [route]
                fixed { routing = "confidence:0.7", preserved_layers = 1, w12_modules = attention, init = normal }
              }
            }
            """);

        var plan = sweep.PlanFor(Assert.Single(sweep.Trials));
        Assert.Equal(new RoutingSpec(RouteRule.Confidence, 0.7), plan.Method.Expansion!.Routing);
        Assert.Equal(ExpansionInit.Normal, plan.Method.Expansion.Init);
        var w12 = plan.Method.Expansion.Train.Single(r => r.Block == ExpansionBlock.W12);
        Assert.Equal((1, 1), (w12.FirstLayer!.Value, w12.LastLayer!.Value));   // L_fp = 1 of the test base's 2 layers
        Assert.Equal(TrainRule.AttentionModules, w12.Modules);
    }

    [Fact]
    public void Frozen_blocks_leave_the_named_blocks_untrained()
    {
        var sweep = Parse("""search { f { methods = [preserve], fixed { frozen_blocks = "head_up, norm_up" } } }""");

        var train = sweep.PlanFor(Assert.Single(sweep.Trials)).Method.Expansion!.Train.Select(r => r.Block).ToList();

        Assert.DoesNotContain(ExpansionBlock.HeadUp, train);
        Assert.DoesNotContain(ExpansionBlock.NormUp, train);
        Assert.Contains(ExpansionBlock.W21, train);
    }

    [Fact]
    public void A_sweep_needs_a_name_and_an_experiment()
    {
        Assert.Contains("'sweep.name': is required", Assert.Throws<ArgumentException>(() => SweepFiles.Parse("sweep { experiment = bio\nmethods = [full] }", "f", ".")).Message);
        Assert.Contains("'sweep.experiment': is required", Assert.Throws<ArgumentException>(() => SweepFiles.Parse("sweep { name = a\nmethods = [full] }", "f", ".")).Message);
        Assert.Contains("No experiment 'nope'", Assert.Throws<ArgumentException>(() => SweepFiles.Parse("sweep { name = a\nexperiment = nope\nmethods = [full] }", "f", ".")).Message);
        Assert.Contains("must be lower-case", Assert.Throws<ArgumentException>(() => SweepFiles.Parse("sweep { name = \"A b\"\nexperiment = bio\nmethods = [full] }", "f", ".")).Message);
    }

    [Fact]
    public void Any_legal_name_names_a_sweep_and_no_sweeps_journal_is_the_sweep_managers()
    {
        var definition = SweepFiles.Parse("sweep { name = manager\nexperiment = bio\nmethods = [full] }", "f", ".");
        Assert.Equal("manager", definition.Validate().Name);
        // A sweep's journal is `sweep-` and its name; the managers' ids are not of that form.
        foreach (var id in new[] { Scale.Actors.Cluster.SweepManager.ManagerPersistenceId, Scale.Actors.Cluster.SweepManager.LocalPersistenceIdOf("manager") })
            Assert.False(id.StartsWith("sweep-", StringComparison.Ordinal) && SweepFiles.NamePattern().IsMatch(id["sweep-".Length..]), id);
    }

    [Fact]
    public void The_reported_experiments_route_with_the_default_rule_and_train_adapts_blocks()
    {
        foreach (var name in new[] { "bio", "bio-ko", "bio-validation" })
        {
            var experiment = ExperimentFiles.Load(name);
            var route = TrialPlanner.Plan(experiment, "route");
            var adapt = TrialPlanner.Plan(experiment, "adapt");
            Assert.Equal(ExpansionSpec.DefaultRouting, route.Method.Expansion!.Routing);
            Assert.Equal(adapt.Method.Expansion!.Train, route.Method.Expansion.Train);
            Assert.Equal(ExpansionInit.Svd, route.Method.Expansion.Init);
        }
        var spec = ExperimentFiles.Parse("experiment {\n route { routing = \"novelty:6:8\" }\n scale { lr-expansion = 3 }\n}", "test");
        Assert.Equal(new RoutingSpec(RouteRule.Novelty, 6, 8), TrialPlanner.Plan(spec, "route").Method.Expansion!.Routing);
        Assert.Equal(3, TrialPlanner.Plan(spec, "route").Rates.Expansion);
        var error = Assert.Throws<ArgumentException>(() => ExperimentFiles.Parse("experiment { route { routing = gate } }", "bad.hocon"));
        Assert.StartsWith("bad.hocon", error.Message);
        Assert.Contains("'route.routing' is not a routing rule", error.Message);
    }
}

public class ImportedBaseSweepTests
{
    [Fact]
    public void A_sweep_can_stand_on_an_imported_hugging_face_model_instead_of_pretraining_one()
    {
        using var dir = new Scale.Tests.Model.TempDirectory();
        var world = new Scale.Model.Data.BioWorld(Scale.Model.Data.BioLanguage.English, 4);
        var tokenizer = Scale.Model.Data.ByteBpeTokenizer.Train(
            Scale.Model.Data.BioRenderer.Corpus(world.DrawPopulation(4), Scale.Model.Data.BioLanguage.English, 4, 1), 300);
        var config = new Scale.Model.Transformer.ModelConfig { VocabSize = tokenizer.VocabSize, HiddenSize = 16, NumLayers = 3, NumHeads = 2, IntermediateSize = 32 };
        using (var model = Scale.Model.Transformer.Decoder.Create(config, seed: 5))
            Scale.Model.Checkpoints.HfCheckpoint.Save(model, dir.Combine("model"));
        tokenizer.Save(dir.Combine("model", "tokenizer.json"));
        var text = """
            sweep {
              name = imported
              experiment {
                old { people = 4, renderings = 4, world-seed = 4 }
                new { people = 4, renderings = 4, world-seed = 4 }
                continual { steps = 2, batch = 2, sequence-length = 16, warmup = 1 }
              }
              base = model
              search { layers { methods = [adapt], grid { w12_layers = ["2"] } } }
            }
            """;

        var sweep = SweepFiles.Parse(text, "imported.hocon", dir.Path);
        var bad = Assert.Throws<ArgumentException>(() => SweepFiles.Parse(text.Replace("\"2\"", "\"3\""), "imported.hocon", dir.Path));
        var missing = Assert.Throws<ArgumentException>(() => SweepFiles.Parse(text.Replace("base = model", "base = nowhere"), "imported.hocon", dir.Path));
        using var task = Scale.Model.Experiments.TwoPhaseExperiment.Prepare(sweep.Experiment, dir.Combine("data"));

        Assert.Equal(3, sweep.Experiment.Model.NumLayers);           // the imported model's configuration, not the default
        Assert.Contains("outside 0..2", bad.Message);                 // checked against the imported model's layers
        Assert.Contains("'sweep.base'", missing.Message);
        Assert.True(task.BaseCached);
        Assert.Equal(0, task.BasePretrainSeconds);
        Assert.Equal(tokenizer.VocabSize, task.Base.Config.VocabSize);
        Assert.False(Directory.Exists(dir.Combine("data", "bases")));   // nothing was pre-trained
    }
}

/// <summary>A sweep that arrives over the wire is checked as fully as a file before the manager persists anything of it.</summary>
public class SubmittedSweepValidationTests
{
    private static string Mutated(Func<System.Text.Json.Nodes.JsonObject, System.Text.Json.Nodes.JsonObject> edit)
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(Scale.Actors.Cluster.SweepDefinitionJson.Write(SweepFiles.Load("quickstart")))!.AsObject();
        return edit(json).ToJsonString();
    }

    [Theory]
    [InlineData("name", "../../escape", "sweep name '../../escape'")]
    [InlineData("trial", "../../../etc", "trial id '../../../etc' is not a safe name")]
    [InlineData("trial", "/abs/path", "trial id '/abs/path' is not a safe name")]
    [InlineData("MaxConcurrent", "0", "max-concurrent must be at least 1")]
    [InlineData("method", "magic", "Unknown method 'magic'")]
    public void An_unsafe_or_impossible_submission_is_refused_with_the_reason(string field, string value, string message)
    {
        var json = Mutated(o =>
        {
            switch (field)
            {
                case "name": o["Name"] = value; break;
                case "trial": o["Trials"]![0]!["Id"] = value; break;
                case "method": o["Trials"]![0]!["Method"] = value; break;
                default: o[field] = int.Parse(value); break;
            }
            return o;
        });

        var error = Assert.Throws<ArgumentException>(() => Scale.Actors.Cluster.SweepDefinitionJson.Read(json));

        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void A_valid_submission_reads_back_and_paths_from_ids_stay_inside_the_data_directory()
    {
        var sweep = Scale.Actors.Cluster.SweepDefinitionJson.Read(Mutated(o => o));

        Assert.Equal("quickstart", sweep.Name);
        Assert.EndsWith(Path.Combine("sweeps", "quickstart"), Scale.Actors.Trainers.SweepPaths.SweepDirectory("/data", "quickstart"));
        Assert.Throws<ArgumentException>(() => Scale.Actors.Trainers.SweepPaths.SweepDirectory("/data", ".."));
        Assert.Throws<ArgumentException>(() => Scale.Actors.Trainers.SweepPaths.TrialDirectory("/data/sweeps/q/trials", "a/../../b"));
    }
}
