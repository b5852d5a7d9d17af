using System.Text.Json;
using Scale.Tests.Actors;
using Scale.Tests.Model;

namespace Scale.Tests.Host;

/// <summary>
/// A local data directory written by the version before local runs went through the sweep manager (commit ec0d88c's
/// build made the fixtures): `scale run` resumes its sweep and `scale results` reads it as that version did, including
/// a sweep named `manager`, whose journal is the id that version's cluster manager used.
/// </summary>
public sealed class JournalMigrationProcessTests
{
    private static string DataDirectoryFrom(TempDirectory dir, string fixture)
    {
        var data = Directory.CreateDirectory(dir.Combine("data")).FullName;
        File.Copy(JournalMigrationTests.Fixture(fixture), Path.Combine(data, "sweeps.db"));
        return data;
    }

    private static string Normalised(string json) => JsonSerializer.Serialize(JsonDocument.Parse(json).RootElement);

    [Fact]
    public void A_local_run_of_the_earlier_version_resumes_and_reads_as_it_did()
    {
        using var dir = new TempDirectory();
        var data = DataDirectoryFrom(dir, "local-run.db");
        var file = dir.Combine("legacy.hocon");
        File.Copy(JournalMigrationTests.Fixture("legacy.hocon"), file);

        var run = ScaleProcess.Run("run", file, "--data-dir", data, "--threads", "1", "--http", "off", "--plain");
        var results = ScaleProcess.Run("results", "legacy", "--data-dir", data, "--format", "json");

        Assert.True(run.ExitCode == 0, run.Stderr + run.Stdout);
        Assert.Contains("Resuming sweep legacy", run.Stdout);
        Assert.Contains("2 completed", run.Stdout);
        Assert.Equal(0, results.ExitCode);
        Assert.Equal(Normalised(File.ReadAllText(JournalMigrationTests.Fixture("local-run.results.json"))), Normalised(results.Stdout));
    }

    [Fact]
    public void A_local_sweep_named_manager_of_an_earlier_version_resumes_under_the_name()
    {
        using var dir = new TempDirectory();
        var data = DataDirectoryFrom(dir, "local-sweep-named-manager.db");
        var file = dir.Combine("manager.hocon");
        File.WriteAllText(file, File.ReadAllText(JournalMigrationTests.Fixture("legacy.hocon")).Replace("name = legacy", "name = manager"));

        var before = ScaleProcess.Run("results", "manager", "--data-dir", data, "--format", "json");
        var run = ScaleProcess.Run("run", file, "--data-dir", data, "--threads", "1", "--http", "off", "--plain");
        var after = ScaleProcess.Run("results", "manager", "--data-dir", data, "--format", "json");

        Assert.True(before.ExitCode == 0, before.Stderr);
        Assert.Equal(2, JsonDocument.Parse(before.Stdout).RootElement.EnumerateArray().Count(t => t.GetProperty("state").GetString() == "completed"));
        Assert.True(run.ExitCode == 0, run.Stderr + run.Stdout);
        Assert.Contains("Resuming sweep manager", run.Stdout);
        Assert.Equal(Normalised(before.Stdout), Normalised(after.Stdout));
    }
}
