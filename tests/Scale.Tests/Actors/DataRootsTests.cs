using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;
using Scale.Tests.Model;

namespace Scale.Tests.Actors;

/// <summary>A submitted sweep's data paths must lie inside the roots the cluster's operator configured, links resolved.</summary>
public class DataRootsTests
{
    private static SweepDefinition Text(string old, string @new)
        => SweepFiles.Parse($"sweep {{\n name = s\n experiment {{\n old {{ kind = text, folder = \"{old}\" }}\n new {{ kind = text, folder = \"{@new}\" }}\n" +
                            " model {\n hidden-size = 32\n layers = 2\n heads = 2\n ffn = 64\n }\n }\n methods = [full]\n}", "s.hocon", "/");

    [Fact]
    public void Paths_inside_a_root_pass_and_one_outside_or_leaving_through_a_link_is_refused_by_name()
    {
        using var dir = new TempDirectory();
        string root = Directory.CreateDirectory(dir.Combine("data")).FullName, other = Directory.CreateDirectory(dir.Combine("corpora")).FullName;
        var elsewhere = Directory.CreateDirectory(dir.Combine("elsewhere")).FullName;
        File.CreateSymbolicLink(Path.Combine(root, "escape"), elsewhere);

        DataRoots.Check(Text(Path.Combine(root, "en"), Path.Combine(other, "ko")), [root, other]);
        DataRoots.Check(Text(root, other), [root, other]);   // a root itself

        var outside = Assert.Throws<ArgumentException>(() => DataRoots.Check(Text(Path.Combine(root, "en"), Path.Combine(elsewhere, "ko")), [root, other]));
        Assert.StartsWith($"new.folder '{Path.Combine(elsewhere, "ko")}' lies outside the directories this cluster reads data from", outside.Message);
        var linked = Assert.Throws<ArgumentException>(() => DataRoots.Check(Text(Path.Combine(root, "escape", "en"), Path.Combine(root, "ko")), [root]));
        Assert.StartsWith("old.folder", linked.Message);
        var sibling = Assert.Throws<ArgumentException>(() => DataRoots.Check(Text(root + "-other/en", Path.Combine(root, "ko")), [root]));   // a prefix is not inside
        Assert.StartsWith("old.folder", sibling.Message);
        var imported = Text(Path.Combine(root, "en"), Path.Combine(root, "ko"));
        imported = imported with { Experiment = imported.Experiment with { BaseModel = Path.Combine(elsewhere, "llama") } };
        Assert.StartsWith("base", Assert.Throws<ArgumentException>(() => DataRoots.Check(imported, [root])).Message);
    }
}
