using System.ComponentModel;
using Akka.Configuration;
using Scale.Actors.Cluster;
using Scale.Actors.Persistence;
using Scale.Host.Cluster;
using Scale.Host.Sweeps;
using Scale.Model;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>TLS for remoting, on every node and client of a cluster.</summary>
internal class TlsSettings : CommandSettings
{
    [CommandOption("--tls-certificate <PFX>"), Description("Encrypt remoting with TLS, presenting this PKCS#12 certificate (every node and client of a TLS cluster needs one it trusts).")]
    public string? TlsCertificate { get; init; }

    [CommandOption("--tls-password <PASSWORD>"), Description("The certificate's password (or SCALE_TLS_PASSWORD).")]
    public string? TlsPassword { get; init; }

    [CommandOption("--tls-insecure"), Description("Accept any certificate (self-signed, for tests only).")]
    public bool TlsInsecure { get; init; }

    public RemotingTls? Tls()
    {
        if (TlsCertificate is null) return null;
        if (!File.Exists(TlsCertificate)) throw new ArgumentException($"--tls-certificate: no file {TlsCertificate}.");
        return new RemotingTls(TlsCertificate, TlsPassword ?? Environment.GetEnvironmentVariable("SCALE_TLS_PASSWORD"), TlsInsecure);
    }
}

/// <summary>Options of a cluster's client (`scale run --cluster`, `scale status --cluster`).</summary>
internal class ClusterClientSettings : TlsSettings
{
    [CommandOption("--client-host <HOST>"), Description("With --cluster: the address the cluster reaches this client at (default 127.0.0.1; in a container, its own address)."), DefaultValue("127.0.0.1")]
    public string ClientHost { get; init; } = "127.0.0.1";
}

/// <summary>Options every cluster node takes: where remoting binds, the seeds, TLS.</summary>
internal class NodeSettings : TlsSettings
{
    [CommandOption("--bind <HOST:PORT>"), Description("Where this node's remoting listens (default 127.0.0.1, loopback only; port 0 picks a free one).")]
    public string? Bind { get; init; }

    [CommandOption("--public-host <HOST>"), Description("The name other nodes reach this one by, when --bind is a wildcard such as 0.0.0.0.")]
    public string? PublicHost { get; init; }

    [CommandOption("--seeds <ADDRESSES>"), Description("Comma-separated seed nodes, host:port or akka.tcp://scale@host:port (the first seed may name itself).")]
    public string? Seeds { get; init; }

    [CommandOption("--data-dir <DIR>"), Description("The data directory every node shares (cached bases, trial checkpoints; default ./scale-data)."), DefaultValue("scale-data")]
    public string DataDir { get; init; } = "scale-data";

    [CommandOption("--join-timeout <SECONDS>"), Description("How long to wait to become a member before giving up."), DefaultValue(120)]
    public int JoinTimeout { get; init; } = 120;

    private static System.Runtime.InteropServices.PosixSignalRegistration? sigterm;

    public IReadOnlyList<string> SeedList(bool required, bool tls)
    {
        var seeds = (Seeds ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => ClusterConfig.SeedAddress(s, tls)).ToList();
        if (required && seeds.Count == 0) throw new ArgumentException("--seeds is required: the address of at least one running seed (host:port).");
        return seeds;
    }

    public ClusterConfig Config(IReadOnlyList<string> roles, IReadOnlyList<string> seeds, RemotingTls? tls)
    {
        var (host, port) = ClusterConfig.ParseBind(Bind ?? "127.0.0.1:0");
        return new ClusterConfig(host, port, seeds, roles) { PublicHost = PublicHost, Tls = tls };
    }

    /// <summary>Ctrl+C or SIGTERM: leave the cluster gracefully.</summary>
    public static CancellationTokenSource OnSignal(CancellationToken outer)
    {
        var stop = CancellationTokenSource.CreateLinkedTokenSource(outer);
        Console.CancelKeyPress += (_, e) =>
        {
            if (stop.IsCancellationRequested) return;
            e.Cancel = true;
            stop.Cancel();
        };
        // Kept for the process's lifetime: a registration that is collected stops handling the signal.
        sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        return stop;
    }
}

/// <summary>`scale seed`: a seed node; seeds host the sweep manager (a cluster singleton) and its journal.</summary>
internal sealed class SeedCommand : AsyncCommand<SeedCommand.Settings>
{
    public sealed class Settings : NodeSettings
    {
        [CommandOption("--journal <CONNECTION>"), Description("The sweeps' journal: a PostgreSQL connection string (Host=…;Database=…;Username=…;Password=…), or sqlite:FILE. Default: sqlite under --data-dir (one machine only).")]
        public string? Journal { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        var tls = settings.Tls();
        var (host, port) = ClusterConfig.ParseBind(settings.Bind ?? "127.0.0.1:4053");   // every flag checked before the journal is created
        var journal = Journal(settings);
        var seeds = settings.SeedList(required: false, tls is not null);
        if (seeds.Count == 0)
        {
            if (port == 0) throw new ArgumentException("The first seed needs a fixed port (--bind host:port) so others can find it, or give --seeds.");
            seeds = [$"{ClusterConfig.Protocol(tls is not null)}://{ClusterConfig.SystemName}@{settings.PublicHost ?? host}:{port}"];
        }
        var cluster = new ClusterConfig(host, port, seeds, [ClusterConfig.SeedRole]) { PublicHost = settings.PublicHost, Tls = tls };
        using var stop = NodeSettings.OnSignal(cancellation);
        await using var node = await ClusterNode.StartAsync(cluster, journal.Config, TimeSpan.FromSeconds(settings.JoinTimeout), stop.Token);
        Console.WriteLine($"Seed {node.SelfAddress} is up (journal: {journal.Description}). Workers join with: scale worker --seeds {node.SelfAddress}");
        Console.Out.Flush();
        await Task.WhenAny(node.WhenTerminated, Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }));
        if (node.WhenTerminated.IsCompleted && !stop.IsCancellationRequested)
        {
            Console.Error.WriteLine("scale: this seed was removed from the cluster (downed or partitioned away); start it again to rejoin.");
            return 3;
        }
        Console.WriteLine("Leaving the cluster.");
        return 0;
    }

    private static (Config Config, string Description) Journal(Settings settings)
    {
        var journal = settings.Journal;
        if (journal is null || journal.StartsWith("sqlite:", StringComparison.OrdinalIgnoreCase))
        {
            var file = journal is null ? SweepSystem.DatabaseFile(settings.DataDir) : journal["sqlite:".Length..];
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(file))!);
            return (PersistenceConfig.Sqlite(file), $"SQLite {file}");
        }
        if (!journal.Contains('=')) throw new ArgumentException($"--journal must be a PostgreSQL connection string (Host=…;Database=…) or sqlite:FILE, got '{journal}'.");
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(journal);
        return (PersistenceConfig.PostgreSql(journal), $"PostgreSQL {builder.Host}:{builder.Port}/{builder.Database}");
    }
}

/// <summary>`scale worker`: a worker node with one trainer per device, pulling trials of the cluster's sweeps.</summary>
internal sealed class WorkerCommand : AsyncCommand<WorkerCommand.Settings>
{
    public sealed class Settings : NodeSettings
    {
        [CommandOption("--devices <DEVICES>"), Description("Comma-separated devices, one trainer each: cpu, cpu:N (more trainers on the CPU), cuda or cuda:N (a CUDA build). Default cpu."), DefaultValue("cpu")]
        public string Devices { get; init; } = "cpu";

        [CommandOption("--precision <TYPE>"), Description("fp32 (default), or bf16: autocast of the linear maps, for CUDA devices."), DefaultValue("fp32")]
        public string Precision { get; init; } = "fp32";

        [CommandOption("--threads <N>"), Description("Threads for this worker's trials; 0 = all cores."), DefaultValue(0)]
        public int Threads { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        Model.Devices.PreferPassiveWaiting();   // before libtorch loads
        var devices = Model.Devices.ParseList(settings.Devices);
        var precision = Model.Devices.ParsePrecision(settings.Precision, devices);
        if (settings.Threads < 0) throw new ArgumentException($"--threads must be 0 (all cores) or more, got {settings.Threads}.");
        int threads = settings.Threads > 0 ? settings.Threads : Environment.ProcessorCount;
        var tls = settings.Tls();
        var cluster = settings.Config([ClusterConfig.WorkerRole], settings.SeedList(required: true, tls is not null), tls);
        using var stop = NodeSettings.OnSignal(cancellation);
        await using var node = await ClusterNode.StartAsync(cluster, null, TimeSpan.FromSeconds(settings.JoinTimeout), stop.Token);
        Console.WriteLine($"Worker {node.SelfAddress} is up: {string.Join(", ", devices)}, {threads} thread(s), data directory {Path.GetFullPath(settings.DataDir)}.");
        Console.Out.Flush();
        var output = TextWriter.Synchronized(Console.Out);
        try
        {
            await new WorkerLoop(node, settings.DataDir, devices, threads, output) { Precision = precision }.RunAsync(stop.Token);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        if (node.WhenTerminated.IsCompleted && !stop.IsCancellationRequested)
        {
            Console.Error.WriteLine("scale: this worker was removed from the cluster (downed or partitioned away); its trials continue elsewhere. Start it again to rejoin.");
            return 3;
        }
        Console.WriteLine("Leaving the cluster; running trials continue elsewhere from their last checkpoint.");
        return 0;
    }
}
