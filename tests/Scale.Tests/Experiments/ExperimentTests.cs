using Scale.Actors.Sweeps;
using Scale.Host.Commands;
using Scale.Model.Data;
using Scale.Model.Experiments;
using Scale.Tests.Model;

namespace Scale.Tests.Experiments;

public class ExperimentTests
{
    internal const string TinyBio = """
        experiment {
          name = tiny
          seed = 3
          vocab-size = 320
          model {
            hidden-size = 32
            layers = 2
            heads = 2
            ffn = 64
          }
          old {
            kind = bio
            people = 6
            renderings = 6
          }
          new {
            kind = bio
            people = 6
            renderings = 6
          }
          pretrain {
            steps = 40
            batch = 8
            sequence-length = 48
            learning-rate = 5e-3
            warmup = 5
            evaluate-every = 20
          }
          continual {
            steps = 10
            batch = 8
            sequence-length = 48
            learning-rate = 5e-3
            warmup = 2
          }
          methods = [frozen, full, freeze, depth, lora, preserve, adapt, route]
        }
        """;

    [Fact]
    public void The_built_in_experiments_parse_and_validate()
    {
        Assert.Equal(["bio", "bio-ko", "bio-qa", "bio-validation", "text", "text-de", "text-ko", "text-validation"], ExperimentFiles.BuiltIn);
        var qa = ExperimentFiles.Load("bio-qa").Qa!;
        Assert.Equal((150, 1e-3, QaMeasure.HeldOut, 4), (qa.Task0.Steps, qa.Task0.LearningRate, qa.Measure, qa.Passes));
        var bio = ExperimentFiles.Load("bio");
        var ko = ExperimentFiles.Load("bio-ko");

        Assert.Equal(BioLanguage.English, bio.New.Language);
        Assert.Equal(BioLanguage.Korean, ko.New.Language);
        Assert.Equal(BioLanguage.English, ko.Old.Language);
        Assert.Equal(8, bio.Methods.Count);
        Assert.Contains("--old", Assert.Throws<ArgumentException>(() => ExperimentFiles.Load("text").Validate()).Message);
    }

    [Fact]
    public void An_experiment_file_sets_routes_rule()
    {
        var spec = ExperimentFiles.Parse("experiment {\n name = x\n route {\n routing = \"cosine:0.3\"\n }\n}", "r.hocon");

        Assert.Equal(new Scale.Model.Upscaling.RoutingSpec(Scale.Model.Upscaling.RouteRule.Cosine, 0.3), TrialPlanner.Plan(spec, "route").Method.Expansion!.Routing);
    }

    [Theory]
    [InlineData("pretrain {\n steps = 10\n stepz = 3\n}", "unknown key 'pretrain.stepz'")]
    [InlineData("pretrain {\n steps = ten\n}", "'pretrain.steps' has the wrong type")]
    [InlineData("methods = [full, magic]", "Unknown method 'magic'")]
    [InlineData("colour = blue", "unknown key 'colour'")]
    [InlineData("route {\n routing = eyes\n}", "'route.routing' is not a routing rule")]
    [InlineData("qa {\n measure = everyone\n}", "qa.measure must be held-out or trained")]
    [InlineData("qa {\n task0 {\n stepz = 3\n }\n}", "unknown key 'qa.task0.stepz'")]
    [InlineData("qa {\n passes = 0\n}", "qa.passes must be at least 1")]
    public void A_bad_experiment_file_is_rejected_naming_the_file_the_key_and_the_reason(string line, string message)
    {
        var text = $"experiment {{\n name = x\n {line}\n}}";

        var error = Assert.Throws<ArgumentException>(() => ExperimentFiles.Parse(text, "my.hocon"));

        Assert.StartsWith("my.hocon", error.Message);
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void A_tiny_bio_experiment_scores_every_method_and_reuses_its_cached_base()
    {
        using var dir = new TempDirectory();
        var spec = ExperimentFiles.Parse(TinyBio, "tiny");

        var first = TwoPhaseExperiment.Run(spec, dir.Path);
        var second = TwoPhaseExperiment.Run(spec with { Methods = ["frozen"] }, dir.Path);

        Assert.False(first.BaseCached);
        Assert.True(second.BaseCached);
        Assert.Equal(first.BaseOld, second.BaseOld);
        Assert.Equal(spec.Methods, first.Methods.Select(m => m.Method));
        var frozen = first.Methods[0];
        Assert.Equal(first.BaseOld, frozen.Retention);
        Assert.Equal(0, frozen.Forgetting);
        Assert.All(first.Methods, m => Assert.Equal(first.BaseOld - m.Retention, m.Forgetting, 12));
        Assert.All(first.Methods.Skip(1), m => Assert.True(m.TokensPerSecond > 0 && m.TrainableParams > 0, m.Method));
        Assert.Single(Directory.GetDirectories(Path.Combine(dir.Path, "bases")));
    }

    [Fact]
    public void An_experiment_on_two_trainers_gives_the_methods_in_order_with_the_numbers_one_trainer_gives()
    {
        using var dir = new TempDirectory();
        var spec = ExperimentFiles.Parse(TinyBio, "tiny") with { Methods = ["preserve", "full", "lora", "frozen", "route"] };

        var two = TwoPhaseExperiment.Run(spec, dir.Path, devices: [TorchSharp.torch.CPU, Scale.Model.Devices.Parse("cpu:1")], threadsPerDevice: 1);
        var one = TwoPhaseExperiment.Run(spec, dir.Path, devices: [TorchSharp.torch.CPU], threadsPerDevice: 1);

        Assert.Equal(spec.Methods, two.Methods.Select(m => m.Method));
        foreach (var (a, b) in two.Methods.Zip(one.Methods))
            Assert.Equal((b.Retention, b.Acquisition, b.FinalLoss), (a.Retention, a.Acquisition, a.FinalLoss));   // bit for bit
    }

    [Fact]
    public void A_text_experiment_reports_held_out_perplexity()
    {
        using var dir = new TempDirectory();
        var world = new BioWorld(BioLanguage.English, 2);
        foreach (var (folder, people) in new[] { ("old", world.DrawPopulation(5)), ("new", world.DrawPopulation(5)) })
        {
            Directory.CreateDirectory(dir.Combine(folder));
            var documents = BioRenderer.Corpus(people, BioLanguage.English, 8, 1);
            for (int i = 0; i < documents.Count; i++) File.WriteAllText(dir.Combine(folder, $"{i}.txt"), documents[i]);
        }
        var spec = ExperimentFiles.Parse(TinyBio.Replace("kind = bio", "kind = text"), "tiny-text") with { Methods = ["frozen", "preserve"] };
        spec = spec with
        {
            Old = spec.Old with { Folder = dir.Combine("old"), HeldOutFraction = 0.25 },
            New = spec.New with { Folder = dir.Combine("new"), HeldOutFraction = 0.25 },
        };

        var result = TwoPhaseExperiment.Run(spec, dir.Combine("data"));

        Assert.Equal("held-out perplexity", result.Metric);
        Assert.InRange(result.BaseOld, 1.0, 320.0);
        Assert.True(result.BaseNew > result.BaseOld, "the base should find its own corpus likelier than the new one");
        var preserve = result.Methods[1];
        Assert.True(preserve.Acquisition < result.BaseNew, "training on the new corpus should lower its perplexity");
        Assert.Equal(preserve.Retention - result.BaseOld, preserve.Forgetting, 12);
    }

    [Fact]
    public void Novelty_auto_calibrates_on_the_old_datas_calibration_slice_alone_never_on_the_new_data_or_the_held_out_set()
    {
        using var dir = new TempDirectory();
        var world = new BioWorld(BioLanguage.English, 2);
        void Write(string folder, IReadOnlyList<string> documents)
        {
            if (Directory.Exists(dir.Combine(folder))) Directory.Delete(dir.Combine(folder), recursive: true);
            Directory.CreateDirectory(dir.Combine(folder));
            for (int i = 0; i < documents.Count; i++) File.WriteAllText(dir.Combine(folder, $"{i}.txt"), documents[i]);
        }
        var oldDocuments = BioRenderer.Corpus(world.DrawPopulation(6), BioLanguage.English, 8, 1).ToList();
        var otherPeople = BioRenderer.Corpus(world.DrawPopulation(6), BioLanguage.English, 8, 2);
        Write("old", oldDocuments);
        Write("new", BioRenderer.Corpus(world.DrawPopulation(6), BioLanguage.English, 8, 3));
        var spec = ExperimentFiles.Parse(TinyBio.Replace("kind = bio", "kind = text"), "tiny-text") with { Methods = ["frozen"] };
        spec = spec with
        {
            Old = spec.Old with { Folder = dir.Combine("old"), HeldOutFraction = 0.2, CalibrationFraction = 0.3 },
            New = spec.New with { Folder = dir.Combine("new"), HeldOutFraction = 0.2 },
        };
        var rule = Scale.Model.Upscaling.RoutingSpec.Parse("novelty-auto:0.9:8");
        double Threshold()
        {
            using var task = TwoPhaseExperiment.Prepare(spec, dir.Combine("data"));
            return task.Runner.Scoring.Calibrate(rule, task.Base).Calibrated!.Value;
        }
        double SplitOf(int i) => CorpusFiles.SplitPoint($"{i}.txt#0");
        var before = Threshold();

        // Other new data, and other held-out documents of the old side: the same threshold.
        Write("new", otherPeople);
        Write("old", oldDocuments.Select((d, i) => SplitOf(i) < 0.2 ? otherPeople[i % otherPeople.Count] : d).ToList());
        var unchanged = Threshold();
        // Other calibration documents: another threshold (the test can tell).
        Write("old", oldDocuments.Select((d, i) => SplitOf(i) is >= 0.2 and < 0.5 ? otherPeople[i % otherPeople.Count] + " " + d : d).ToList());
        var changed = Threshold();

        Assert.Contains(Enumerable.Range(0, oldDocuments.Count), i => SplitOf(i) < 0.2);
        Assert.Equal(before, unchanged);
        Assert.NotEqual(before, changed);
    }

    [Fact]
    public void A_tiny_bio_qa_experiment_trains_task_0_once_and_scores_first_token_accuracy()
    {
        using var dir = new TempDirectory();
        var spec = ExperimentFiles.Parse(TinyBio.Replace("methods = [", "qa {\n task0 {\n steps = 30\n batch = 8\n sequence-length = 48\n learning-rate = 5e-3\n evaluate-every = 10\n }\n }\n methods = ["),
                                         "tiny-qa") with { Methods = ["frozen", "full"], VocabSize = 640 };
        spec = spec with { Continual = spec.Continual with { Steps = 60 }, Settings = new SortedDictionary<string, string> { ["lr"] = "5e-3" } };

        var first = TwoPhaseExperiment.Run(spec, dir.Path);
        var second = TwoPhaseExperiment.Run(spec with { Methods = ["frozen"] }, dir.Path);

        Assert.Equal("first-token accuracy", first.Metric);
        Assert.False(first.BaseCached);
        Assert.True(second.BaseCached);
        Assert.Equal(first.BaseOld, second.BaseOld);
        Assert.Equal(first.BaseOld, first.Methods[0].Retention);
        // The pre-trained base and the Task-0 model are cached apart: a change to Task 0 reuses the pre-training.
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(dir.Path, "bases")).Length);
        Assert.Single(Directory.GetDirectories(Path.Combine(dir.Path, "bases"), "qa-*"));
        var full = first.Methods[1];
        Assert.Equal(full.Retention, full.RetentionFirstToken);
        Assert.Equal(first.BaseOld - full.Retention, full.Forgetting, 12);
        Assert.True(full.Acquisition > first.BaseNew, $"training on B's questions should answer more of them ({first.BaseNew} → {full.Acquisition})");
    }

    [Fact]
    public void Bio_qa_questions_end_in_the_answer_marker_and_their_documents_carry_the_answer()
    {
        var people = new BioWorld(BioLanguage.English, 4).DrawPopulation(3);

        var prompts = people.SelectMany(BioQa.Prompts).ToList();
        var corpus = BioQa.Corpus(people, 2, seed: 5);

        Assert.Equal(18, prompts.Count);
        Assert.All(prompts, p => Assert.EndsWith("\nAnswer:", p.Prompt));
        Assert.Equal(36, corpus.Count);
        Assert.Equal(prompts.Select(p => p.Prompt + " " + p.Answer).Order(), corpus.Take(18).Order());
        Assert.NotEqual(corpus.Take(18), corpus.Skip(18));    // each pass in its own order
        Assert.Equal(corpus, BioQa.Corpus(people, 2, seed: 5));
        Assert.Contains("qa's questions are English", Assert.Throws<ArgumentException>(() =>
            ExperimentFiles.Parse(TinyBio.Replace("methods = [", "new.language = korean\n qa {}\n methods = ["), "ko")).Message);
    }

    [Fact]
    public void A_tokenizer_that_covers_the_new_language_encodes_it_in_fewer_pieces_without_seeing_the_new_people()
    {
        using var dir = new TempDirectory();
        var korean = ExperimentFiles.Parse(TinyBio.Replace("methods = [", "new.language = korean\n methods = ["), "ko") with { Methods = ["frozen"], VocabSize = 640 };
        var covering = korean with { TokenizerCoversNew = true };

        using var plain = TwoPhaseExperiment.Prepare(korean, dir.Path);
        using var covered = TwoPhaseExperiment.Prepare(covering, dir.Path);

        var text = string.Join(" ", covered.NewPrompts!.Select(p => p.Prompt + " " + p.Answer));
        int before = plain.Tokenizer.Encode(text).Count, after = covered.Tokenizer.Encode(text).Count;
        Assert.True(after < before * 0.8, $"Korean text: {before} pieces with the English tokenizer, {after} with the covering one");
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(dir.Path, "bases")).Length);   // two tokenizers, two bases
        Assert.Contains("imported base", Assert.Throws<ArgumentException>(() => (covering with { BaseModel = dir.Path }).Validate()).Message);
    }
}
