namespace Scale.Tests;

/// <summary>Files of the repository the tests run from (docs, README, scripts), found above the test's output directory.</summary>
internal static class Repository
{
    public static string File(params string[] parts)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (System.IO.File.Exists(Path.Combine(dir.FullName, "Scale.sln"))) return Path.Combine([dir.FullName, .. parts]);
        throw new InvalidOperationException("the repository root (Scale.sln) is not above the test's directory");
    }
}
