using Akka.Configuration;
using Scale.Actors.Persistence;

namespace Scale.Tests.Actors;

/// <summary>
/// A TestKit with a directory and a SQLite journal of its own per test, removed afterwards. One per test, because the
/// SQLite driver pools connections process-wide: a shared file deleted after one test would be read-only to the next.
/// </summary>
public abstract class SqliteTestKit : Akka.TestKit.Xunit2.TestKit
{
    protected SqliteTestKit(string systemName) : this(systemName, Path.Combine(Path.GetTempPath(), $"scale-{systemName}-{Guid.NewGuid():N}"))
    {
    }

    private SqliteTestKit(string systemName, string root)
        : base(ConfigurationFactory.ParseString("akka.test.single-expect-default = 60s\nakka.loglevel = WARNING")
                   .WithFallback(PersistenceConfig.Sqlite(Path.Combine(Directory.CreateDirectory(root).FullName, "sweeps.db"))), systemName)
        => Root = root;

    /// <summary>The test's directory; its journal is Root/sweeps.db.</summary>
    protected string Root { get; }

    protected override void AfterAll()
    {
        base.AfterAll();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Directory.Exists(Root)) Directory.Delete(Root, recursive: true);
    }
}
