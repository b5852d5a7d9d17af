using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster.Tools.Client;
using Akka.Cluster.Tools.Singleton;
using Akka.Configuration;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Scale.Actors.Cluster;
using Scale.Actors.Trainers;
using Scale.Host.Logging;
using Scale.Host.Sweeps;

namespace Scale.Host.Cluster;

/// <summary>
/// One `scale` process in a cluster (Akka.Hosting): a seed hosts the sweep manager as a cluster singleton (with the
/// journal) and offers it to clients through the cluster-client receptionist; a worker reaches it through a
/// singleton proxy. Both wait until they are members (Up) before they return.
/// </summary>
internal sealed class ClusterNode : IAsyncDisposable
{
    private readonly IHost host;

    private ClusterNode(IHost host)
    {
        this.host = host;
        System = host.Services.GetRequiredService<ActorSystem>();
        Manager = host.Services.GetRequiredService<ActorRegistry>().Get<ManagerProxyKey>();
        DataLoader = host.Services.GetRequiredService<ActorRegistry>().Get<Scale.Actors.Data.DataLoader>();
    }

    private sealed class ManagerProxyKey;

    public ActorSystem System { get; }
    /// <summary>The singleton proxy: messages for the sweep manager, wherever it runs now.</summary>
    public IActorRef Manager { get; }
    /// <summary>The node's data loader (batches for its trainers).</summary>
    public IActorRef DataLoader { get; }
    public string SelfAddress => Akka.Cluster.Cluster.Get(System).SelfAddress.ToString();
    public ILoggerFactory Logs => host.Services.GetRequiredService<ILoggerFactory>();

    /// <summary>The path under which seeds register the manager's proxy with the receptionist.</summary>
    public const string ServicePath = "/user/sweeps-proxy";

    public static Task<ClusterNode> StartAsync(ClusterConfig cluster, Config? persistence, TimeSpan joinTimeout, CancellationToken cancellation,
                                               IReadOnlyList<string>? dataRoots = null)
        => StartAsync(new NodeOptions(cluster) { Persistence = persistence, JoinTimeout = joinTimeout, DataRoots = dataRoots, CheckDataRoots = true }, cancellation);

    /// <summary>
    /// Starts the node and returns once it is an Up member: a node with no seed nodes joins itself (a local run's cluster
    /// of one, on a free port).
    /// </summary>
    public static async Task<ClusterNode> StartAsync(NodeOptions options, CancellationToken cancellation)
    {
        var cluster = options.Cluster;
        bool seed = cluster.Roles.Contains(ClusterConfig.SeedRole);
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        if (options.Logging is { } logging) logging(builder.Logging);
        else
        {
            builder.Logging.AddOneLineConsole("HH:mm:ss ");
            builder.Logging.AddFilter<Microsoft.Extensions.Logging.Console.ConsoleLoggerProvider>(level => level >= LogLevel.Information);
            builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Warning);
        }
        var config = ConfigurationFactory.ParseString($"akka.cluster.client.receptionist.role = {ClusterConfig.SeedRole}")
            .WithFallback(AkkaDefaults.Config()).WithFallback(cluster.ToConfig());
        if (options.Persistence is not null) config = config.WithFallback(options.Persistence);
        // Every node carries the cluster tools' serializers: the receptionist on the seeds gossips through distributed pub-sub.
        config = config.WithFallback(ClusterSingleton.DefaultConfig()).WithFallback(ClusterClientReceptionist.DefaultConfig())
            .WithFallback(Akka.Cluster.Tools.PublishSubscribe.DistributedPubSub.DefaultConfig());
        builder.Services.AddSingleton<IHostLifetime, CommandLifetime>();
        var ssl = options.Tls ?? cluster.Tls?.Setup();   // the certificate and how peers' certificates are checked
        if (seed && options.CheckDataRoots && options.DataRoots is null) throw new ArgumentException("a seed needs its data roots");
        builder.Services.AddAkka(ClusterConfig.SystemName, (akka, _) => (ssl is null ? akka : akka.AddSetup(ssl))
            .AddHocon(config, HoconAddMode.Prepend)
            .ConfigureLoggers(loggers =>
            {
                loggers.LogLevel = Akka.Event.LogLevel.InfoLevel;
                loggers.ClearLoggers();
                loggers.AddLoggerFactory();
            })
            .WithActors((system, registry, _) =>
            {
                if (seed)
                    system.ActorOf(ClusterSingletonManager.Props(SweepManager.Props(options.CheckDataRoots ? options.DataRoots : null, snapshotEvery: options.SnapshotEvery, onlySweep: options.OnlySweep),
                        PoisonPill.Instance, ClusterSingletonManagerSettings.Create(system).WithRole(ClusterConfig.SeedRole)), ClusterConfig.ManagerName);
                var proxy = system.ActorOf(ClusterSingletonProxy.Props($"/user/{ClusterConfig.ManagerName}",
                    ClusterSingletonProxySettings.Create(system).WithRole(ClusterConfig.SeedRole)), "sweeps-proxy");
                registry.Register<ManagerProxyKey>(proxy);
                if (seed && options.Receptionist) ClusterClientReceptionist.Get(system).RegisterService(proxy);
            })
            .WithDataLoader());
        var host = builder.Build();
        try
        {
            await host.StartAsync(cancellation);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            host.Dispose();
            throw new Commands.CommandFailedException($"could not start this node on {cluster.Host}:{cluster.Port}: {Innermost(e).Message}", e);
        }
        var node = new ClusterNode(host);
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var members = Akka.Cluster.Cluster.Get(node.System);
        members.RegisterOnMemberUp(() => up.TrySetResult());
        node.Membership = Actors.Telemetry.ClusterMembership.Follow(node.System);
        if (cluster.SeedNodes.Count == 0) members.Join(members.SelfAddress);
        if (await Task.WhenAny(up.Task, Task.Delay(options.JoinTimeout, cancellation)) != up.Task)
        {
            await node.DisposeAsync();
            cancellation.ThrowIfCancellationRequested();
            if (cluster.SeedNodes.Count == 0)
                throw new InvalidOperationException($"this process could not join its own cluster at {members.SelfAddress} within {options.JoinTimeout.TotalSeconds:0} s");
            throw new Commands.CommandFailedException(
                $"could not join the cluster through {string.Join(", ", cluster.SeedNodes)} within {options.JoinTimeout.TotalSeconds:0} s: is a seed running there, and reachable?",
                new TimeoutException(), 3);
        }
        return node;
    }

    /// <summary>What this node shows operators (its endpoint's view and gauges).</summary>
    public Actors.Telemetry.NodeView View(string dataDirectory, bool seed, IReadOnlyList<string> devices)
        => new(System, Manager, SelfAddress, Membership, dataDirectory, seed, devices);

    /// <summary>This node's view of the cluster's membership, from Akka.Cluster.</summary>
    public Actors.Telemetry.ClusterMembership Membership { get; private set; } = null!;

    /// <summary>The root cause of a start-up failure (Akka wraps it in aggregate and invocation exceptions).</summary>
    public static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e;
    }

    /// <summary>Completes when this node's actor system ends: after leaving, or when the cluster downed it.</summary>
    public Task WhenTerminated => System.WhenTerminated;

    /// <summary>Leaves the cluster gracefully (its trials are re-queued once it is removed) and stops.</summary>
    public async Task LeaveAsync()
    {
        if (!System.WhenTerminated.IsCompleted)
            await CoordinatedShutdown.Get(System).Run(CoordinatedShutdown.ClusterLeavingReason.Instance);
    }

    public async ValueTask DisposeAsync()
    {
        await LeaveAsync();
        AkkaDefaults.QuietShutdown(System);
        await host.StopAsync(TimeSpan.FromSeconds(30));
        host.Dispose();
    }
}

/// <summary>How a <see cref="ClusterNode"/> starts: its cluster settings and, on a seed, its journal and the manager's settings.</summary>
internal sealed record NodeOptions(ClusterConfig Cluster)
{
    /// <summary>The journal (a seed's).</summary>
    public Config? Persistence { get; init; }
    public TimeSpan JoinTimeout { get; init; } = TimeSpan.FromMinutes(1);
    /// <summary>Where a submission's data must lie (a seed's <c>--data-roots</c>), when <see cref="CheckDataRoots"/>.</summary>
    public IReadOnlyList<string>? DataRoots { get; init; }
    /// <summary>False for a local run: the sweep comes from the machine's own user, whose files it may name anywhere.</summary>
    public bool CheckDataRoots { get; init; }
    /// <summary>Events between snapshots of each sweep's state.</summary>
    public int SnapshotEvery { get; init; } = 100;
    /// <summary>TLS given in memory (a local run's certificate made for the run) instead of <see cref="ClusterConfig.Tls"/>'s files.</summary>
    public Akka.Remote.Transport.DotNetty.DotNettySslSetup? Tls { get; init; }
    /// <summary>Where logs go; null: information and up to the console with the time (a seed's or a worker's).</summary>
    public Action<ILoggingBuilder>? Logging { get; init; }
    /// <summary>A local run's one sweep: its manager manages no other (other processes may run other sweeps of the data directory).</summary>
    public string? OnlySweep { get; init; }
    /// <summary>Whether clients (`scale run --cluster`, `status --cluster`) may reach the manager through this seed.</summary>
    public bool Receptionist { get; init; } = true;
}

/// <summary>
/// A client of a running cluster (`scale run --cluster`, `scale status --cluster`): not a member, it reaches the
/// sweep manager through the seeds' cluster-client receptionist, so that submitting or watching a sweep never
/// changes the cluster's membership.
/// </summary>
internal sealed class ClusterClientConnection : IAsyncDisposable
{
    private readonly ActorSystem system;
    private readonly IActorRef client;

    private ClusterClientConnection(ActorSystem system, IActorRef client) => (this.system, this.client) = (system, client);

    public static ClusterClientConnection Connect(IReadOnlyList<string> seeds, string bindHost, RemotingTls? tls)
    {
        var cluster = new ClusterConfig(bindHost, 0, [], []) { Tls = tls };
        var config = ConfigurationFactory.ParseString("""
            akka.actor.provider = remote
            akka.cluster.client.reconnect-timeout = off
            """).WithFallback(AkkaDefaults.Config("WARNING")).WithFallback(cluster.ToConfig()).WithFallback(ClusterClientReceptionist.DefaultConfig())
            // The client's messages travel in distributed pub-sub envelopes, which have a serializer of their own.
            .WithFallback(Akka.Cluster.Tools.PublishSubscribe.DistributedPubSub.DefaultConfig());
        ActorSystem system;
        try
        {
            var setup = BootstrapSetup.Create().WithConfig(config);
            system = tls is null ? ActorSystem.Create(ClusterConfig.SystemName, setup) : ActorSystem.Create(ClusterConfig.SystemName, setup.And(tls.Setup()));
        }
        catch (Exception e)
        {
            throw new Commands.CommandFailedException($"could not start the cluster client: {ClusterNode.Innermost(e).Message}", e);
        }
        var contacts = seeds.Select(s => ActorPath.Parse(ClusterConfig.SeedAddress(s, tls is not null) + "/system/receptionist")).ToImmutableHashSet();
        var client = system.ActorOf(ClusterClient.Props(ClusterClientSettings.Create(system).WithInitialContacts(contacts)), "client");
        return new ClusterClientConnection(system, client);
    }

    /// <summary>Asks the sweep manager; a failure it answers with is thrown as the exception it carries.</summary>
    public async Task<object> AskAsync(object message, TimeSpan timeout, CancellationToken cancellation = default)
    {
        var answer = await client.Ask<object>(new ClusterClient.Send(ClusterNode.ServicePath, message, localAffinity: false), timeout, cancellation);
        return answer is Status.Failure failure ? throw failure.Cause : answer;
    }

    public async ValueTask DisposeAsync() => await system.Terminate();
}
