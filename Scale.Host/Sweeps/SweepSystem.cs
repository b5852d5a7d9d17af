using Akka.Actor;
using Akka.Configuration;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Serilog;
using Scale.Actors.Data;
using Scale.Actors.Persistence;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Host.Logging;

namespace Scale.Host.Sweeps;

/// <summary>A host lifetime that leaves signals to the command (the default console lifetime would stop the actor system on Ctrl+C under the command's feet).</summary>
internal sealed class CommandLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>Akka settings every `scale` actor system starts from: quiet about dead letters, and shut down by the command, not by the CLR.</summary>
internal static class AkkaDefaults
{
    public static Akka.Configuration.Config Config(string logLevel = "INFO") => ConfigurationFactory.ParseString($"""
        akka.loglevel = {logLevel}
        akka.stdout-loglevel = WARNING
        akka.log-dead-letters = off
        akka.log-dead-letters-during-shutdown = off
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        """);

    /// <summary>
    /// Warnings and errors only from here on: once the loggers stop during shutdown, Akka prints what is still logged to
    /// stdout at the system's level, so an information line ("Remoting shut down.") would otherwise end a command's output.
    /// </summary>
    public static void QuietShutdown(ActorSystem system) => system.EventStream.SetLogLevel(Akka.Event.LogLevel.WarningLevel);
}

/// <summary>Marker for the sweep coordinator in the actor registry.</summary>
internal sealed class CoordinatorKey;

/// <summary>
/// The composition root of one `scale` process working on a sweep: an actor system (Akka.Hosting) with the
/// embedded SQLite journal under the data directory, the sweep's coordinator (recovered from the journal) and
/// the node's data loader. Trainers and the evaluator are added once the base is resident.
/// </summary>
internal sealed class SweepSystem : IAsyncDisposable
{
    private readonly IHost host;

    private SweepSystem(IHost host, string dataDirectory)
    {
        this.host = host;
        DataDirectory = dataDirectory;
        System = host.Services.GetRequiredService<ActorSystem>();
        var registry = host.Services.GetRequiredService<ActorRegistry>();
        Coordinator = registry.Get<CoordinatorKey>();
        DataLoader = registry.Get<DataLoader>();
        System.ActorOf(Props.Create(() => new QuarantineTap(quarantined)), "quarantine-tap");
    }

    private readonly TaskCompletionSource<SweepQuarantined> quarantined = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Hears the coordinator say its sweep is quarantined (an event of its journal cannot be read).</summary>
    private sealed class QuarantineTap : ReceiveActor
    {
        public QuarantineTap(TaskCompletionSource<SweepQuarantined> heard)
        {
            Context.System.EventStream.Subscribe(Self, typeof(SweepQuarantined));
            Receive<SweepQuarantined>(q => heard.TrySetResult(q));
        }
    }

    public string DataDirectory { get; }
    public ActorSystem System { get; }
    public IActorRef Coordinator { get; }
    public IActorRef DataLoader { get; }

    public static string DatabaseFile(string dataDirectory) => SweepPaths.DatabaseFile(dataDirectory);
    public static string SweepDirectory(string dataDirectory, string sweep) => SweepPaths.SweepDirectory(dataDirectory, sweep);

    /// <summary>The process's structured log of this sweep (compact JSON lines), when the command keeps one.</summary>
    public static string LogFile(string dataDirectory, string sweep) => Path.Combine(SweepDirectory(dataDirectory, sweep), "scale.log.jsonl");

    public ILoggerFactory Logs => host.Services.GetRequiredService<ILoggerFactory>();

    /// <summary>
    /// Starts the actor system. With <paramref name="keepLog"/>, Akka's and Scale's logs go, structured and with the
    /// sweep's id, to <see cref="LogFile"/> (information and up) and warnings and errors also to stderr.
    /// </summary>
    public static async Task<SweepSystem> StartAsync(string dataDirectory, string sweepName, int snapshotEvery = 100, bool keepLog = false)
    {
        Directory.CreateDirectory(dataDirectory);
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Logging.AddOneLineConsole();
        builder.Logging.AddFilter<Microsoft.Extensions.Logging.Console.ConsoleLoggerProvider>(level => level >= LogLevel.Warning);
        builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        if (keepLog)
        {
            Directory.CreateDirectory(SweepDirectory(dataDirectory, sweepName));
            var file = new Serilog.LoggerConfiguration()
                .MinimumLevel.Information()
                .Enrich.FromLogContext()
                .Enrich.WithProperty("sweep", sweepName)
                .WriteTo.File(new Serilog.Formatting.Compact.CompactJsonFormatter(), LogFile(dataDirectory, sweepName), shared: true)
                .CreateLogger();
            builder.Logging.AddSerilog(file, dispose: true);
        }
        // A cluster of one: the process joins itself on loopback (a free port), so that what it reports of its membership
        // comes from Akka.Cluster, as on a real cluster, not from constants.
        // Mutual TLS with a certificate made for this run and pinned by its thumbprint: no other process can join.
        var local = new Actors.Cluster.ClusterConfig("127.0.0.1", 0, [], ["coordinator", "trainer"]) { TlsFromSetup = true };
        var ssl = Actors.Cluster.LocalRunTls.Create();
        var config = AkkaDefaults.Config().WithFallback(PersistenceConfig.Sqlite(DatabaseFile(dataDirectory))).WithFallback(local.ToConfig());
        builder.Services.AddSingleton<IHostLifetime, CommandLifetime>();   // the command, not the host, decides what Ctrl+C does
        builder.Services.AddAkka("scale", (akka, _) => akka
            .AddSetup(ssl)
            .AddHocon(config, HoconAddMode.Prepend)
            .ConfigureLoggers(loggers =>
            {
                loggers.LogLevel = Akka.Event.LogLevel.InfoLevel;
                loggers.ClearLoggers();
                loggers.AddLoggerFactory();   // Akka's log through Microsoft.Extensions.Logging: the file and stderr above
            })
            .WithActors((system, registry, _) =>
            {
                registry.Register<CoordinatorKey>(system.ActorOf(SweepCoordinator.Props(sweepName, snapshotEvery), $"sweep-{sweepName}"));
            })
            .WithDataLoader());
        var host = builder.Build();
        await host.StartAsync();
        var system = new SweepSystem(host, dataDirectory);
        await system.JoinSelfAsync();
        return system;
    }

    /// <summary>This process's view of its (one-member) cluster.</summary>
    public Actors.Telemetry.ClusterMembership Membership { get; private set; } = null!;

    private async Task JoinSelfAsync()
    {
        var cluster = Akka.Cluster.Cluster.Get(System);
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        cluster.RegisterOnMemberUp(() => up.TrySetResult());
        Membership = Actors.Telemetry.ClusterMembership.Follow(System);
        cluster.Join(cluster.SelfAddress);
        if (await Task.WhenAny(up.Task, Task.Delay(TimeSpan.FromMinutes(1))) != up.Task)
            throw new InvalidOperationException($"this process could not join its own cluster at {cluster.SelfAddress} within a minute");
    }

    /// <summary>The coordinator's state (recovered from the journal on first use).</summary>
    public async Task<SweepState> StateAsync() => (SweepState)await AskCoordinator(GetSweepState.Instance);

    /// <summary>
    /// Asks the coordinator, failing at once (not at the timeout) if it stops instead of answering — which it does
    /// when its journal cannot be read or written.
    /// </summary>
    public async Task<object> AskCoordinator(object message)
    {
        coordinatorStopped ??= Coordinator.WatchAsync();
        var answer = Coordinator.Ask(message, TimeSpan.FromMinutes(2));
        if (await Task.WhenAny(answer, coordinatorStopped) == answer) return await answer;
        if (await Task.WhenAny(quarantined.Task, Task.Delay(TimeSpan.FromSeconds(2))) == quarantined.Task)
            throw new Commands.CommandFailedException(
                $"sweep {quarantined.Task.Result.SweepId} cannot be recovered: {quarantined.Task.Result.Reason}. Its journal {DatabaseFile(DataDirectory)} is kept as it is; " +
                "restore it from a backup, or run the sweep under a new name.", new InvalidOperationException(quarantined.Task.Result.Reason));
        throw new InvalidOperationException(
            $"the sweep coordinator stopped: its journal {DatabaseFile(DataDirectory)} could not be read or written (the errors above say why)");
    }

    private Task<bool>? coordinatorStopped;

    public async ValueTask DisposeAsync()
    {
        AkkaDefaults.QuietShutdown(System);
        await host.StopAsync(TimeSpan.FromSeconds(30));
        host.Dispose();
    }
}
