using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Serilog;
using Scale.Actors.Cluster;
using Scale.Actors.Persistence;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Host.Cluster;
using Scale.Host.Logging;

namespace Scale.Host.Sweeps;

/// <summary>A host lifetime that leaves signals to the command (the default console lifetime would stop the actor system on Ctrl+C under the command's feet).</summary>
internal sealed class CommandLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>
/// A local `scale run`: the same node a cluster runs, as its only member — seed and worker in one process, on loopback
/// with TLS made for the run, the embedded SQLite journal under the data directory — so that the sweep goes through the
/// cluster's sweep manager, its supervised coordinators and the same trainers and views.
/// </summary>
internal sealed class LocalRun : IAsyncDisposable
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromMinutes(2);
    private readonly string sweepName;

    private LocalRun(ClusterNode node, string dataDirectory, string sweepName)
    {
        (Node, DataDirectory, this.sweepName) = (node, dataDirectory, sweepName);
        Journal = new SweepJournalWatch(node.System, sweepName, SweepPaths.DatabaseFile(dataDirectory));
    }

    public ClusterNode Node { get; }
    /// <summary>The sweep's journal: quarantined, or failing its writes.</summary>
    public SweepJournalWatch Journal { get; }
    public string DataDirectory { get; }
    public ActorSystem System => Node.System;
    /// <summary>The sweep manager: trainers address the sweep through it.</summary>
    public IActorRef Manager => Node.Manager;
    public IActorRef DataLoader => Node.DataLoader;
    public ILoggerFactory Logs => Node.Logs;

    /// <summary>The process's structured log of this sweep (compact JSON lines).</summary>
    public static string LogFile(string dataDirectory, string sweep) => Path.Combine(SweepPaths.SweepDirectory(dataDirectory, sweep), "scale.log.jsonl");

    /// <summary>
    /// Starts the node. Akka's and Scale's logs go, structured and with the sweep's id, to <see cref="LogFile"/> (information
    /// and up), and warnings and errors also to stderr.
    /// </summary>
    public static async Task<LocalRun> StartAsync(string dataDirectory, string sweepName, int snapshotEvery, CancellationToken cancellation)
    {
        Directory.CreateDirectory(dataDirectory);
        var database = SweepPaths.DatabaseFile(dataDirectory);
        PersistenceConfig.CheckSqliteOpens(database);
        Directory.CreateDirectory(SweepPaths.SweepDirectory(dataDirectory, sweepName));
        var file = new Serilog.LoggerConfiguration()
            .MinimumLevel.Information()
            .Enrich.FromLogContext()
            .Enrich.WithProperty("sweep", sweepName)
            .WriteTo.File(new Serilog.Formatting.Compact.CompactJsonFormatter(), LogFile(dataDirectory, sweepName), shared: true)
            .CreateLogger();
        // Mutual TLS with a certificate made for this run and pinned by its thumbprint: no other process can join.
        var options = new NodeOptions(new ClusterConfig("127.0.0.1", 0, [], [ClusterConfig.SeedRole, ClusterConfig.WorkerRole]) { TlsFromSetup = true })
        {
            Persistence = PersistenceConfig.Sqlite(database), SnapshotEvery = snapshotEvery, Tls = LocalRunTls.Create(), Receptionist = false, OnlySweep = sweepName,
            Logging = logging =>
            {
                logging.AddOneLineConsole();
                logging.AddFilter<Microsoft.Extensions.Logging.Console.ConsoleLoggerProvider>(level => level >= LogLevel.Warning);
                logging.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
                logging.AddSerilog(file, dispose: true);
            },
        };
        return new LocalRun(await ClusterNode.StartAsync(options, cancellation), dataDirectory, sweepName);
    }

    /// <summary>Submits the sweep to the manager (again, on a resume): the coordinator's answer.</summary>
    public Task<object> SubmitAsync(SweepDefinition sweep)
        => AskAsync(new SubmitSweep(sweep.Name, SweepDefinitionJson.Write(sweep)));

    /// <summary>The sweep's state (recovered from the journal on first use).</summary>
    public async Task<SweepState> StateAsync() => (SweepState)await AskAsync(new ToSweep(sweepName, GetSweepState.Instance));

    public Task<object> AskSweepAsync(ISweepCommand command) => AskAsync(new ToSweep(sweepName, command));

    /// <summary>
    /// Asks the manager. A sweep whose journal cannot be recovered fails at once with one line; a journal that does not
    /// answer (its database locked or unreachable) fails after <see cref="AskTimeout"/>.
    /// </summary>
    private async Task<object> AskAsync(object message)
    {
        var answer = Manager.Ask<object>(message, AskTimeout);
        if (await Task.WhenAny(answer, Journal.WhenQuarantined) != answer) throw Quarantined();
        object result;
        try
        {
            result = await answer;
        }
        catch (AskTimeoutException)
        {
            throw new InvalidOperationException(Journal.Fault() ?? $"the sweep's journal {SweepPaths.DatabaseFile(DataDirectory)} did not answer within {AskTimeout.TotalSeconds:0} s");
        }
        if (result is Status.Failure failure)
        {
            if (await Task.WhenAny(Journal.WhenQuarantined, Task.Delay(TimeSpan.FromSeconds(1))) == Journal.WhenQuarantined) throw Quarantined();
            if (failure.Cause is ArgumentException) throw failure.Cause;
            throw new InvalidOperationException(failure.Cause.Message, failure.Cause);
        }
        return result;
    }

    private Commands.CommandFailedException Quarantined()
    {
        var q = Journal.WhenQuarantined.Result;
        return new Commands.CommandFailedException(
            $"sweep {q.SweepId} cannot be recovered: {q.Reason}. Its journal {SweepPaths.DatabaseFile(DataDirectory)} is kept as it is; " +
            "restore it from a backup, or run the sweep under a new name.", new InvalidOperationException(q.Reason));
    }

    public async ValueTask DisposeAsync()
    {
        AkkaDefaults.QuietShutdown(System);   // before leaving: the cluster's leave logs at information level as the loggers stop
        await Node.DisposeAsync();
    }
}
