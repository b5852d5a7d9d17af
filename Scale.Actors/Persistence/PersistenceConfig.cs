using Akka.Configuration;
using Akka.Persistence.Sql;

namespace Scale.Actors.Persistence;

/// <summary>
/// Akka.Persistence.Sql configuration: the embedded default, a SQLite file, or PostgreSQL for clusters (tables are
/// created on first use in both), with Scale's own serialiser bound to the persisted sweep events and snapshots.
/// </summary>
internal static class PersistenceConfig
{
    /// <summary>
    /// A SQLite file, in WAL mode (readers never block the writer, nor it them) with a 30 s busy timeout: Microsoft.Data.Sqlite
    /// retries a statement that meets a locked database until its command timeout ("Default Timeout") has passed.
    /// </summary>
    public static Config Sqlite(string databaseFile) => For("SQLite.MS", SqliteConnectionString(databaseFile));

    /// <summary>Only the read journal of a SQLite file: what read-only commands use; a persistent actor could not even start on it.</summary>
    public static Config SqliteReadOnly(string databaseFile) => ReadOnly("SQLite.MS", SqliteConnectionString(databaseFile));

    private static string SqliteConnectionString(string databaseFile)
    {
        var file = Path.GetFullPath(databaseFile);
        UseWriteAheadLog(file);
        return $"Data Source={file};Default Timeout=30";
    }

    /// <summary>
    /// Switches a SQLite database to write-ahead logging (a setting kept in the file itself, so once is enough; a file
    /// that does not exist yet is created in that mode).
    /// </summary>
    public static void UseWriteAheadLog(string databaseFile)
    {
        var directory = Path.GetDirectoryName(databaseFile);
        if (directory is not null) Directory.CreateDirectory(directory);
        try
        {
            Pragma(databaseFile, "journal_mode=WAL");
        }
        catch (Microsoft.Data.Sqlite.SqliteException)
        {
            // A file that cannot be opened as a database is refused by CheckSqliteOpens, or by the journal itself.
        }
    }

    /// <summary>
    /// Refuses, with the cause in one line, a SQLite journal that cannot be opened as a database (a directory in its
    /// place, a file of another kind, no permission): the journal's own actors would only be restarted with backoff.
    /// </summary>
    public static void CheckSqliteOpens(string databaseFile)
    {
        try
        {
            Pragma(databaseFile, "schema_version");
        }
        catch (Microsoft.Data.Sqlite.SqliteException e)
        {
            throw new InvalidOperationException($"the sweep journal {Path.GetFullPath(databaseFile)} cannot be opened: {e.Message}", e);
        }
    }

    private static void Pragma(string databaseFile, string pragma)
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.GetFullPath(databaseFile)};Default Timeout=30;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"PRAGMA {pragma};";
        command.ExecuteScalar();
    }

    /// <summary>A PostgreSQL database (Npgsql connection string: Host=…;Port=…;Database=…;Username=…;Password=…).</summary>
    public static Config PostgreSql(string connectionString) => For("PostgreSQL.15", connectionString);

    private static Config For(string provider, string connection)
    {
        connection = connection.Replace("\\", "\\\\").Replace("\"", "\\\"");
        return ConfigurationFactory.ParseString($$"""
            akka.persistence {
              journal {
                plugin = "akka.persistence.journal.sql"
                sql {
                  connection-string = "{{connection}}"
                  provider-name = "{{provider}}"
                  auto-initialize = true
                }
              }
              query.journal.sql {
                connection-string = "{{connection}}"
                provider-name = "{{provider}}"
              }
              snapshot-store {
                plugin = "akka.persistence.snapshot-store.sql"
                sql {
                  connection-string = "{{connection}}"
                  provider-name = "{{provider}}"
                  auto-initialize = true
                }
              }
            }
            """).WithFallback(Serializers).WithFallback(SqlPersistence.DefaultConfiguration);
    }

    /// <summary>Scale's own serialiser for the persisted sweep events and snapshots.</summary>
    private static readonly Config Serializers = ConfigurationFactory.ParseString("""
            akka.actor {
              serializers.scale-sweep = "Scale.Actors.Sweeps.SweepEventSerializer, Scale.Actors"
              serialization-bindings {
                "Scale.Actors.Sweeps.ISweepEvent, Scale.Actors" = scale-sweep
                "Scale.Actors.Cluster.IManagerEvent, Scale.Actors" = scale-sweep
                "Scale.Actors.Sweeps.SweepSnapshot, Scale.Actors" = scale-sweep
              }
              serialization-identifiers {
                "Scale.Actors.Sweeps.SweepEventSerializer, Scale.Actors" = 7301
              }
            }
            """);

    private static Config ReadOnly(string provider, string connection)
    {
        connection = connection.Replace("\\", "\\\\").Replace("\"", "\\\"");
        return ConfigurationFactory.ParseString($$"""
            akka.persistence.journal.plugin = ""
            akka.persistence.snapshot-store.plugin = ""
            # The read journal takes its table layout from the write journal's settings (not started: no default journal).
            akka.persistence.journal.sql {
              connection-string = "{{connection}}"
              provider-name = "{{provider}}"
            }
            akka.persistence.query.journal.sql {
              write-plugin = "akka.persistence.journal.sql"
              connection-string = "{{connection}}"
              provider-name = "{{provider}}"
            }
            """).WithFallback(Serializers).WithFallback(SqlPersistence.DefaultConfiguration);
    }
}
