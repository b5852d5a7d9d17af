using Akka.Configuration;
using Scale.Actors.Persistence;

namespace Scale.Tests.Actors;

/// <summary>
/// A TestKit with a directory and a SQLite journal of its own per test, removed afterwards. One per test, because the
/// SQLite driver pools connections process-wide: a shared file deleted after one test would be read-only to the next.
/// </summary>
public abstract class SqliteTestKit : Akka.TestKit.Xunit2.TestKit
{
    protected SqliteTestKit(string systemName) : this(systemName, Config.Empty)
    {
    }

    /// <summary>With <paramref name="config"/> before the journal's (a cluster node's, for actors that need the cluster).</summary>
    protected SqliteTestKit(string systemName, Config config) : this(systemName, config, Path.Combine(Path.GetTempPath(), $"scale-{systemName}-{Guid.NewGuid():N}"))
    {
    }

    private SqliteTestKit(string systemName, Config config, string root)
        : base(ConfigurationFactory.ParseString("akka.test.single-expect-default = 60s\nakka.loglevel = WARNING").WithFallback(config)
                   .WithFallback(PersistenceConfig.Sqlite(Path.Combine(Directory.CreateDirectory(root).FullName, "sweeps.db"))), systemName)
        => Root = root;

    /// <summary>The test's directory; its journal is Root/sweeps.db.</summary>
    protected string Root { get; }

    /// <summary>Runs a statement on the journal's database directly (as a disk fault or a hand edit would change it); rows changed.</summary>
    protected int Execute(string sql)
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(Root, "sweeps.db")};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteNonQuery();
    }

    protected override void AfterAll()
    {
        base.AfterAll();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        // A journal's last write (SQLite's -wal and -shm files) can land while the directory is removed: try again, and
        // leave a temporary directory behind rather than fail a test whose assertions all held.
        for (int attempt = 1; Directory.Exists(Root); attempt++)
        {
            try
            {
                Directory.Delete(Root, recursive: true);
            }
            catch (IOException) when (attempt < 5)
            {
                Thread.Sleep(200 * attempt);   // cleanup only: nothing to wait on but the files' writer
            }
            catch (IOException)
            {
                return;
            }
        }
    }
}
