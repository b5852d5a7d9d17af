using Scale.Actors.Sweeps;
using Scale.Host.Commands;
using Scale.Model.Data;
using Scale.Model.Experiments;
using Scale.Tests.Model;

namespace Scale.Tests.Experiments;

public class ExperimentTests
{
    private const string TinyBio = """
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
        Assert.Equal(["bio", "bio-ko", "bio-validation", "text"], ExperimentFiles.BuiltIn);
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
}
