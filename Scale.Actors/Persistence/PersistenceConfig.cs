using Akka.Configuration;
using Akka.Persistence.Sql;

namespace Scale.Actors.Persistence;

/// <summary>
/// Akka.Persistence.Sql configuration: the embedded default, a SQLite file, or PostgreSQL for clusters (tables are
/// created on first use in both), with Scale's own serialiser bound to the persisted sweep events and snapshots.
/// </summary>
public static class PersistenceConfig
{
    public static Config Sqlite(string databaseFile) => For("SQLite.MS", $"Data Source={Path.GetFullPath(databaseFile)}");

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
              snapshot-store {
                plugin = "akka.persistence.snapshot-store.sql"
                sql {
                  connection-string = "{{connection}}"
                  provider-name = "{{provider}}"
                  auto-initialize = true
                }
              }
            }
            akka.actor {
              serializers.scale-sweep = "Scale.Actors.Sweeps.SweepEventSerializer, Scale.Actors"
              serialization-bindings {
                "Scale.Actors.Sweeps.ISweepEvent, Scale.Actors" = scale-sweep
                "Scale.Actors.Sweeps.SweepSnapshot, Scale.Actors" = scale-sweep
              }
              serialization-identifiers {
                "Scale.Actors.Sweeps.SweepEventSerializer, Scale.Actors" = 7301
              }
            }
            """).WithFallback(SqlPersistence.DefaultConfiguration);
    }
}
