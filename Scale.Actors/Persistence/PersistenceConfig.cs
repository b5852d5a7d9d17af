using Akka.Configuration;
using Akka.Persistence.Sql;

namespace Scale.Actors.Persistence;

/// <summary>
/// Akka.Persistence.Sql configuration for the embedded default, a SQLite file (tables created on first use),
/// with Scale's own serialiser bound to the persisted sweep events.
/// </summary>
public static class PersistenceConfig
{
    public static Config Sqlite(string databaseFile)
    {
        var connection = $"Data Source={Path.GetFullPath(databaseFile)}";
        return ConfigurationFactory.ParseString($$"""
            akka.persistence {
              journal {
                plugin = "akka.persistence.journal.sql"
                sql {
                  connection-string = "{{connection}}"
                  provider-name = "SQLite.MS"
                  auto-initialize = true
                }
              }
              snapshot-store {
                plugin = "akka.persistence.snapshot-store.sql"
                sql {
                  connection-string = "{{connection}}"
                  provider-name = "SQLite.MS"
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
