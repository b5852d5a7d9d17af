using Akka.Actor;
using Scale.Actors.Trainers;
using System.ComponentModel;
using Akka.Configuration;
using Scale.Actors.Cluster;
using Scale.Actors.Persistence;
using Scale.Host.Cluster;
using Scale.Actors.Reports;
using Scale.Actors.Telemetry;
using Scale.Host.Sweeps;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>TLS for remoting, on every node and client of a cluster.</summary>
internal class TlsSettings : CommandSettings
{
    [CommandOption("--tls-certificate <PFX>"), Description("Encrypt remoting with TLS, presenting this PKCS#12 certificate (every node and client of a TLS cluster needs one it trusts).")]
    public string? TlsCertificate { get; init; }

    [CommandOption("--tls-password <PASSWORD>"), Description("The certificate's password; better from a file (--tls-password-file) or SCALE_TLS_PASSWORD, which other users cannot read in the process list.")]
    public string? TlsPassword { get; init; }

    [CommandOption("--tls-password-file <FILE>"), Description("A file holding the certificate's password (its first line).")]
    public string? TlsPasswordFile { get; init; }

    [CommandOption("--tls-ca <CERT>"), Description("Trust only peers whose certificates chain to this CA certificate (PEM or DER), and a node connected to only if its certificate names the host it is reached at. --tls-certificate needs it or --tls-thumbprint.")]
    public string? TlsCa { get; init; }

    [CommandOption("--tls-thumbprint <SHA1,…>"), Description("Accept only peers presenting one of these certificates (SHA-1 thumbprints, hex, comma-separated).")]
    public string? TlsThumbprint { get; init; }

    [CommandOption("--tls-insecure"), Description("Accept any certificate without checking it: for tests only (a warning is printed).")]
    public bool TlsInsecure { get; init; }

    public RemotingTls? Tls()
    {
        if (TlsCertificate is null)
        {
            if (TlsCa is not null || TlsThumbprint is not null || TlsInsecure)
                throw new ArgumentException("--tls-ca, --tls-thumbprint and --tls-insecure need --tls-certificate.");
            return null;
        }
        if (!TlsInsecure && TlsCa is null && TlsThumbprint is null)
            throw new ArgumentException("--tls-certificate needs --tls-ca CA.cer (the cluster's own CA) or --tls-thumbprint SHA1,…: " +
                                        "trusting every public root would let anyone holding a certificate from a public CA join.");
        if (!File.Exists(TlsCertificate)) throw new ArgumentException($"--tls-certificate: no file {TlsCertificate}.");
        if (TlsCa is not null && !File.Exists(TlsCa)) throw new ArgumentException($"--tls-ca: no file {TlsCa}.");
        if (TlsInsecure && (TlsCa is not null || TlsThumbprint is not null))
            throw new ArgumentException("--tls-insecure accepts any certificate; it cannot be combined with --tls-ca or --tls-thumbprint.");
        if (TlsInsecure) Console.Error.WriteLine("scale: warning: --tls-insecure accepts any peer certificate without checking it; use it for tests only.");
        var thumbprints = (TlsThumbprint ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(t => t.Replace(":", "").ToUpperInvariant()).ToList();
        if (thumbprints.FirstOrDefault(t => t.Length != 40 || !t.All(Uri.IsHexDigit)) is { } bad)
            throw new ArgumentException($"--tls-thumbprint: '{bad}' is not a SHA-1 thumbprint (40 hex digits).");
        var tls = new RemotingTls(TlsCertificate, Secrets.Read(TlsPassword, TlsPasswordFile, "SCALE_TLS_PASSWORD", "--tls-password"), TlsInsecure)
        {
            TrustedCa = TlsCa, Thumbprints = thumbprints,
        };
        tls.Setup();   // the certificate and the CA are read now: a bad one is refused before anything starts
        return tls;
    }
}

/// <summary>Secrets (passwords, connection strings) from a file or the environment, so that none has to be on the command line.</summary>
internal static class Secrets
{
    /// <summary>The value given on the command line, else the first line of <paramref name="file"/>, else the environment variable, else null.</summary>
    public static string? Read(string? value, string? file, string environment, string option)
    {
        if (value is not null && file is not null) throw new ArgumentException($"give {option} or {option}-file, not both.");
        if (file is not null)
        {
            if (!File.Exists(file)) throw new ArgumentException($"{option}-file: no file {file}.");
            return File.ReadLines(file).FirstOrDefault()?.TrimEnd('\r') ?? "";
        }
        // A password given as such, or a connection string that carries one: any user of the machine can read it in the
        // process list. Said once; the value is used as given.
        if (value is not null && (option.EndsWith("password", StringComparison.Ordinal) || Redaction.HoldsSecret(value)))
            Console.Error.WriteLine($"scale: warning: {option} on the command line is visible to every user of this machine in the process list; " +
                                    $"give it with {option}-file or {environment} instead.");
        return value ?? Environment.GetEnvironmentVariable(environment);
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

    [CommandOption("--insecure-plaintext"), Description("Let remoting bind beyond loopback without TLS: anyone who can reach the port can then join the cluster. For a network nothing else can reach; prints a warning.")]
    public bool InsecurePlaintext { get; init; }

    /// <summary>
    /// Refuses remoting beyond loopback without TLS (anyone who reaches the port could join and stop the cluster's work)
    /// unless --insecure-plaintext says so, which is warned about.
    /// </summary>
    public void CheckTransport(string host, RemotingTls? tls)
    {
        if (tls is not null || Sweeps.OperatorEndpoint.IsLoopback(host)) return;
        if (!InsecurePlaintext)
            throw new ArgumentException($"--bind {host} reaches beyond this machine without TLS: anyone who can reach the port could join the cluster. " +
                                        "Give --tls-certificate (with --tls-ca for your own CA), or --insecure-plaintext on a network nothing else can reach.");
        Console.Error.WriteLine($"scale: warning: remoting on {host} without TLS (--insecure-plaintext): anyone who can reach the port can join this cluster.");
    }

    [CommandOption("--join-timeout <SECONDS>"), Description("How long to wait to become a member before giving up."), DefaultValue(120)]
    public int JoinTimeout { get; init; } = 120;

    [CommandOption("--http <ADDRESS>"), Description("The operators' endpoint (health probes, Prometheus metrics, the dashboard and JSON API of the whole cluster): host:port, or off. Port 0 picks a free one."), DefaultValue("127.0.0.1:8787")]
    public string Http { get; init; } = "127.0.0.1:8787";

    [CommandOption("--http-token-file <FILE>"), Description("A file holding the endpoint's bearer token (or SCALE_HTTP_TOKEN); required to bind --http beyond loopback.")]
    public string? HttpTokenFile { get; init; }

    /// <summary>The endpoint's address and token, checked before the node starts.</summary>
    public (string Address, string? Token) Endpoint()
    {
        var token = OperatorEndpoint.Token(HttpTokenFile);
        OperatorEndpoint.CheckAddress(Http, token);
        return (Http, token);
    }

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
        CheckTransport(host, tls);
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
        [CommandOption("--journal <CONNECTION>"), Description("The sweeps' journal: a PostgreSQL connection string (Host=…;Database=…;Username=…;Password=…), or sqlite:FILE. Default: sqlite under --data-dir (one machine only). A connection string with a password is better given by --journal-file or SCALE_JOURNAL.")]
        public string? Journal { get; init; }

        [CommandOption("--journal-file <FILE>"), Description("A file holding the journal's connection string (its first line), e.g. a mounted secret.")]
        public string? JournalFile { get; init; }

        [CommandOption("--data-roots <DIRS>"), Description("Comma-separated directories a submitted sweep may read data from (text and shard folders, an imported base); a submission naming a path elsewhere is refused. Default: --data-dir. Give every seed the same.")]
        public string? DataRoots { get; init; }

        /// <summary>The roots, absolute; the data directory when none are given.</summary>
        public IReadOnlyList<string> Roots()
            => (DataRoots ?? DataDir).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) is { Length: > 0 } roots
                ? roots.Select(Path.GetFullPath).ToList()
                : throw new ArgumentException("--data-roots names no directory.");
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        var tls = settings.Tls();
        var (host, port) = ClusterConfig.ParseBind(settings.Bind ?? "127.0.0.1:4053");   // every flag checked before the journal is created
        settings.CheckTransport(host, tls);
        var http = settings.Endpoint();
        var roots = settings.Roots();
        var journal = Journal(settings);
        var seeds = settings.SeedList(required: false, tls is not null);
        if (seeds.Count == 0)
        {
            if (port == 0) throw new ArgumentException("The first seed needs a fixed port (--bind host:port) so others can find it, or give --seeds.");
            seeds = [$"{ClusterConfig.Protocol(tls is not null)}://{ClusterConfig.SystemName}@{settings.PublicHost ?? host}:{port}"];
        }
        var cluster = new ClusterConfig(host, port, seeds, [ClusterConfig.SeedRole]) { PublicHost = settings.PublicHost, Tls = tls };
        using var stop = NodeSettings.OnSignal(cancellation);
        await using var node = await ClusterNode.StartAsync(cluster, journal.Config, TimeSpan.FromSeconds(settings.JoinTimeout), stop.Token, roots);
        Console.WriteLine($"Seed {node.SelfAddress} is up (journal: {journal.Description}; sweeps read data under {string.Join(", ", roots)}). Workers join with: scale worker --seeds {node.SelfAddress}");
        Console.Out.Flush();
        await using var view = node.View(settings.DataDir, seed: true, []);
        await using var endpoint = await OperatorEndpoint.StartOrReport(http.Address, view, http.Token);
        Console.Out.Flush();
        await Task.WhenAny(node.WhenTerminated, Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }));
        if (node.WhenTerminated.IsCompleted && !stop.IsCancellationRequested)
        {
            Console.Error.WriteLine("scale: this seed was removed from the cluster (downed or partitioned away); start it again to rejoin.");
            return 3;
        }
        await WhileWorkersDrain(view.Membership, node.SelfAddress, TimeSpan.FromSeconds(20));
        Console.WriteLine("Leaving the cluster.");
        return 0;
    }

    /// <summary>
    /// The last seed (no other Up seed for the sweep manager to move to) stopping while workers are members waits up to
    /// <paramref name="patience"/> for them to leave: a scheduler stopping the whole cluster (Slurm's scancel) signals
    /// every node at once, and the checkpoints the draining workers write on their way out reach the journal only
    /// while the manager runs. Polled every quarter second: membership has no "all workers gone" event.
    /// </summary>
    private static async Task WhileWorkersDrain(Scale.Actors.Telemetry.ClusterMembership membership, string self, TimeSpan patience)
    {
        bool OtherSeed() => membership.Current.Members.Any(m => m.Address != self && m.Status == "up" && m.Roles.Contains(ClusterConfig.SeedRole));
        bool Workers() => membership.Current.Members.Any(m => m.Roles.Contains(ClusterConfig.WorkerRole) && m.Status is not ("exiting" or "down" or "removed"));
        if (OtherSeed() || !Workers()) return;
        Console.WriteLine($"Waiting up to {patience.TotalSeconds:0} s for the workers to checkpoint and leave (this is the last seed).");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (Workers() && !OtherSeed() && clock.Elapsed < patience) await Task.Delay(250);
    }

    private static (Config Config, string Description) Journal(Settings settings)
    {
        var journal = Secrets.Read(settings.Journal, settings.JournalFile, "SCALE_JOURNAL", "--journal");
        if (journal is null || journal.StartsWith("sqlite:", StringComparison.OrdinalIgnoreCase))
        {
            var file = journal is null ? SweepPaths.DatabaseFile(settings.DataDir) : journal["sqlite:".Length..];
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

        [CommandOption("--precision <TYPE>"), Description("fp32 (default), or bf16: mixed precision with the frozen base resident in bf16 (CUDA, or a CPU with bf16 units)."), DefaultValue("fp32")]
        public string Precision { get; init; } = "fp32";

        [CommandOption("--threads <N>"), Description("Threads for this worker's trials; 0 = all cores."), DefaultValue(0)]
        public int Threads { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        TorchStartup.Start(settings.Precision);   // before libtorch loads and runs its first product
        var devices = Model.Devices.ParseList(settings.Devices);
        var precision = Model.Devices.ParsePrecision(settings.Precision, devices);
        if (settings.Threads < 0) throw new ArgumentException($"--threads must be 0 (all cores) or more, got {settings.Threads}.");
        int threads = settings.Threads > 0 ? settings.Threads : Environment.ProcessorCount;
        var tls = settings.Tls();
        var http = settings.Endpoint();
        var cluster = settings.Config([ClusterConfig.WorkerRole], settings.SeedList(required: true, tls is not null), tls);
        using var stop = NodeSettings.OnSignal(cancellation);
        await using var node = await ClusterNode.StartAsync(cluster, null, TimeSpan.FromSeconds(settings.JoinTimeout), stop.Token);
        Console.WriteLine($"Worker {node.SelfAddress} is up: {string.Join(", ", devices)}, {threads} thread(s), data directory {Path.GetFullPath(settings.DataDir)}.");
        Console.Out.Flush();
        await using var view = node.View(settings.DataDir, seed: false, devices);
        await using var endpoint = await OperatorEndpoint.StartOrReport(http.Address, view, http.Token);
        Console.Out.Flush();
        var output = TextWriter.Synchronized(Console.Out);
        var progress = new PlainSweepView(output);
        EventTap.Start(node.System, "progress", message =>
        {
            if (message is TrialProgress p) progress.Trial(p);
            else if (message is TrialNotice n) progress.Notice(n);
        }, typeof(TrialProgress), typeof(TrialNotice));
        var worker = node.System.ActorOf(Worker.Props(new WorkerOptions(settings.DataDir, devices, threads, output) { Precision = precision },
                                                      node.Manager, node.DataLoader, node.SelfAddress, node.Logs.CreateLogger("Scale.Worker")), "worker");
        await Task.WhenAny(node.WhenTerminated, Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default));
        if (!node.WhenTerminated.IsCompleted)
            await Task.WhenAny(worker.Ask<WorkerStopped>(StopWorking.Instance, TimeSpan.FromMinutes(5)), node.WhenTerminated);
        if (node.WhenTerminated.IsCompleted && !stop.IsCancellationRequested)
        {
            Console.Error.WriteLine("scale: this worker was removed from the cluster (downed or partitioned away); its trials continue elsewhere. Start it again to rejoin.");
            return 3;
        }
        Console.WriteLine("Leaving the cluster; running trials continue elsewhere from their last checkpoint.");
        return 0;
    }
}
