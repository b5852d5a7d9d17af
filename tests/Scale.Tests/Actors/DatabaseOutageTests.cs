using Scale.Model.Experiments;
using Akka.Actor;
using Akka.Configuration;
using Npgsql;
using Scale.Actors.Persistence;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Tests.Persistence;

namespace Scale.Tests.Actors;

/// <summary>
/// The database becomes unreachable (a relay in front of a real PostgreSQL server cuts every connection) while a
/// trial ends: the supervised coordinator hands out no work, the trainer sends its report again with backoff, and
/// once the database is back the sweep finishes with every trial started and completed exactly once.
/// </summary>
public sealed class DatabaseOutageTests : Akka.TestKit.Xunit2.TestKit, IClassFixture<PostgresServer>
{
    private readonly string direct;
    private readonly TcpGate gate;

    public DatabaseOutageTests(PostgresServer server) : this(server.NewDatabase())
    {
    }

    private DatabaseOutageTests(string database) : this(database, Gate(database))
    {
    }

    private DatabaseOutageTests(string database, TcpGate gate)
        : base(ConfigurationFactory.ParseString("""
                   akka.test.single-expect-default = 60s
                   akka.loglevel = WARNING
                   akka.persistence.journal.sql.circuit-breaker.reset-timeout = 2s
                   akka.persistence.snapshot-store.sql.circuit-breaker.reset-timeout = 2s
                   """)
                   .WithFallback(PersistenceConfig.PostgreSql(new NpgsqlConnectionStringBuilder(database) { Host = "127.0.0.1", Port = gate.Port, Timeout = 5 }.ConnectionString)),
               "outage")
        => (direct, this.gate) = (database, gate);

    private static TcpGate Gate(string database)
    {
        var builder = new NpgsqlConnectionStringBuilder(database);
        return new TcpGate(builder.Host!, builder.Port);
    }

    /// <summary>t1 runs until released; t2 ends at once.</summary>
    private sealed class HeldExecutor : ITrialExecutor
    {
        public readonly ManualResetEventSlim Release = new();
        public readonly TaskCompletionSource Started = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TrialMetrics Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, CancellationToken cancellation)
        {
            if (trial.Id == "t1")
            {
                Started.TrySetResult();
                Release.Wait(cancellation);
            }
            return new TrialMetrics(new Scores(0.9, 0.8, 0.05)) { FinalLoss = 1 };
        }
    }

    private long Count(string manifest)
    {
        using var connection = new NpgsqlConnection(direct);
        connection.Open();
        using var command = new NpgsqlCommand("SELECT count(*) FROM journal WHERE manifest = @m", connection);
        command.Parameters.AddWithValue("m", manifest);
        return (long)command.ExecuteScalar()!;
    }

    [Fact]
    public void While_the_database_is_unreachable_no_work_is_handed_out_and_afterwards_nothing_is_recorded_twice()
    {
        var coordinator = Sys.ActorOf(SweepCoordinator.Supervised("outage", minBackoff: TimeSpan.FromMilliseconds(200), maxBackoff: TimeSpan.FromSeconds(2)), "coordinator");
        coordinator.Tell(new StartSweep("outage", [new TrialSpec("t1", "preserve", new Dictionary<string, string>()), new TrialSpec("t2", "preserve", new Dictionary<string, string>())],
                                        MaxConcurrent: 2, RetryBudget: 0), TestActor);
        ExpectMsg<Accepted>();
        var executor = new HeldExecutor();
        var trainer = Sys.ActorOf(Trainer.Props(coordinator, "w1", executor, TimeSpan.FromMilliseconds(200), replyTimeout: TimeSpan.FromSeconds(2)));
        Watch(trainer);
        Assert.True(executor.Started.Task.Wait(TimeSpan.FromMinutes(1)), "t1 never started");

        // The database goes away just as t1 ends: the completion cannot be recorded, the trainer's request for t2 is
        // not answered (no work is handed out while the journal cannot record it), and the trainer tries both again.
        var logs = CreateTestProbe();
        Sys.EventStream.Subscribe(logs.Ref, typeof(Akka.Event.Warning));
        gate.Cut();
        executor.Release.Set();
        bool Logged(string text) => logs.FishForMessage<Akka.Event.Warning>(w => w.Message.ToString()!.Contains(text), TimeSpan.FromMinutes(1)) is not null;
        Assert.True(Logged("no answer to ReportCompleted for trial t1"));
        Assert.True(Logged("no work answer from the coordinator"));
        Assert.True(Logged("no answer to ReportCompleted for trial t1"));   // sent again, with backoff
        Assert.Equal(0, Count("trial-completed.v2"));
        Assert.Equal(1, Count("trial-started.v1"));

        gate.Restore();
        ExpectTerminated(trainer, TimeSpan.FromMinutes(2));   // the trainer stops when the sweep is finished

        Assert.Equal(2, Count("trial-started.v1"));
        Assert.Equal(2, Count("trial-completed.v2"));
        Assert.Equal(0, Count("trial-requeued.v1") + Count("trial-retrying.v1") + Count("trial-failed.v1"));
        coordinator.Tell(GetSweepState.Instance, TestActor);
        var state = FishForMessage<SweepState>(_ => true);
        Assert.True(state.Finished);
        Assert.All(state.Trials.Values, t => Assert.Equal((TrialStatus.Completed, 1), (t.Status, t.Attempt)));
    }

    protected override void AfterAll()
    {
        base.AfterAll();
        gate.Dispose();
    }
}
