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

    public static async Task<ClusterNode> StartAsync(ClusterConfig cluster, Config? persistence, TimeSpan joinTimeout, CancellationToken cancellation,
                                                     IReadOnlyList<string>? dataRoots = null)
    {
        bool seed = cluster.Roles.Contains(ClusterConfig.SeedRole);
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Logging.AddOneLineConsole("HH:mm:ss ");
        builder.Logging.AddFilter<Microsoft.Extensions.Logging.Console.ConsoleLoggerProvider>(level => level >= LogLevel.Information);
        builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Warning);
        var config = ConfigurationFactory.ParseString($"akka.cluster.client.receptionist.role = {ClusterConfig.SeedRole}")
            .WithFallback(AkkaDefaults.Config()).WithFallback(cluster.ToConfig());
        if (persistence is not null) config = config.WithFallback(persistence);
        // Every node carries the cluster tools' serializers: the receptionist on the seeds gossips through distributed pub-sub.
        config = config.WithFallback(ClusterSingleton.DefaultConfig()).WithFallback(ClusterClientReceptionist.DefaultConfig())
            .WithFallback(Akka.Cluster.Tools.PublishSubscribe.DistributedPubSub.DefaultConfig());
        builder.Services.AddSingleton<IHostLifetime, CommandLifetime>();
        var ssl = cluster.Tls?.Setup();   // the certificate and how peers' certificates are checked
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
                    system.ActorOf(ClusterSingletonManager.Props(SweepManager.Props(dataRoots ?? throw new ArgumentException("a seed needs its data roots")), PoisonPill.Instance,
                        ClusterSingletonManagerSettings.Create(system).WithRole(ClusterConfig.SeedRole)), ClusterConfig.ManagerName);
                var proxy = system.ActorOf(ClusterSingletonProxy.Props($"/user/{ClusterConfig.ManagerName}",
                    ClusterSingletonProxySettings.Create(system).WithRole(ClusterConfig.SeedRole)), "sweeps-proxy");
                registry.Register<ManagerProxyKey>(proxy);
                if (seed) ClusterClientReceptionist.Get(system).RegisterService(proxy);
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
        Akka.Cluster.Cluster.Get(node.System).RegisterOnMemberUp(() => up.TrySetResult());
        if (await Task.WhenAny(up.Task, Task.Delay(joinTimeout, cancellation)) != up.Task)
        {
            await node.DisposeAsync();
            cancellation.ThrowIfCancellationRequested();
            throw new Commands.CommandFailedException(
                $"could not join the cluster through {string.Join(", ", cluster.SeedNodes)} within {joinTimeout.TotalSeconds:0} s: is a seed running there, and reachable?",
                new TimeoutException(), 3);
        }
        return node;
    }

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
