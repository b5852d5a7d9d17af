using System.Security.Cryptography.X509Certificates;
using System.Text;
using Akka.Configuration;
using Akka.Event;

namespace Scale.Actors.Cluster;

/// <summary>TLS for remoting: a PKCS#12 certificate every node presents and trusts.</summary>
internal sealed record RemotingTls(string CertificatePath, string? Password, bool SuppressValidation = false)
{
    /// <summary>
    /// A CA certificate (PEM or DER) that peers' certificates must chain to, as the only trust anchor; a node this one
    /// connects to must also present a certificate naming the host it is reached at (its address's host, in a subject
    /// alternative name or the common name). Null: the system's roots (the command line requires a CA or thumbprints).
    /// </summary>
    public string? TrustedCa { get; init; }
    /// <summary>Peer certificate thumbprints (SHA-1, hex) that are accepted, and no others; empty: any that validates.</summary>
    public IReadOnlyList<string> Thumbprints { get; init; } = [];

    /// <summary>
    /// The TLS setup of a node or client: its certificate, mutual authentication (each side presents one), and how a peer's
    /// certificate is checked — chained to <see cref="TrustedCa"/> alone and naming the host dialled, or pinned by thumbprint,
    /// or (without either) chained to the system's trusted roots; <see cref="SuppressValidation"/> accepts anything (tests only).
    /// </summary>
    public Akka.Remote.Transport.DotNetty.DotNettySslSetup Setup()
    {
        X509Certificate2 certificate;
        try
        {
            certificate = X509CertificateLoader.LoadPkcs12FromFile(CertificatePath, Password, X509KeyStorageFlags.DefaultKeySet);
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            throw new ArgumentException($"--tls-certificate {CertificatePath}: cannot be read as PKCS#12 with the password given ({e.Message}).");
        }
        Akka.Remote.Transport.DotNetty.CertificateValidationCallback? validator = null;
        if (TrustedCa is { } caFile)
        {
            X509Certificate2 ca;
            try
            {
                ca = X509CertificateLoader.LoadCertificateFromFile(caFile);
            }
            catch (System.Security.Cryptography.CryptographicException e)
            {
                throw new ArgumentException($"--tls-ca {caFile}: not a certificate ({e.Message}).");
            }
            validator = (peer, _, remote, errors, log) => ChainsTo(peer, ca, log) && NamesTheHost(peer!, remote, errors, log);
        }
        if (Thumbprints.Count > 0)
        {
            var pinned = Akka.Remote.Transport.DotNetty.CertificateValidation.PinnedCertificate([.. Thumbprints]);
            validator = validator is null ? pinned : Akka.Remote.Transport.DotNetty.CertificateValidation.Combine(validator, pinned);
        }
        return new Akka.Remote.Transport.DotNetty.DotNettySslSetup(certificate, SuppressValidation, requireMutualAuthentication: true, validator);
    }

    /// <summary>
    /// Whether the certificate of a node this one connected to names the host of the address it was reached at (TLS sets
    /// a name mismatch on the connecting side only: a node that accepts a connection has no name to expect, and relies on the CA).
    /// </summary>
    public static bool NamesTheHost(X509Certificate2 peer, string remote, System.Net.Security.SslPolicyErrors errors, Akka.Event.ILoggingAdapter? log = null)
    {
        if (!errors.HasFlag(System.Net.Security.SslPolicyErrors.RemoteCertificateNameMismatch)) return true;
        log?.Warning("TLS: refused the certificate {0} ({1}) of {2}: it does not name the host connected to (a subject alternative name or the common name must)",
                     peer.Subject, peer.Thumbprint, remote);
        return false;
    }

    /// <summary>Whether <paramref name="peer"/> chains to <paramref name="ca"/>, trusted alone (no system roots, no revocation lists: a private CA has none).</summary>
    public static bool ChainsTo(X509Certificate2? peer, X509Certificate2 ca, Akka.Event.ILoggingAdapter? log = null)
    {
        if (peer is null) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        bool valid = chain.Build(peer);
        if (!valid) log?.Warning("TLS: refused the certificate {0} ({1}): it does not chain to the trusted CA {2}", peer.Subject, peer.Thumbprint, ca.Subject);
        return valid;
    }
}

/// <summary>
/// Akka configuration of one cluster node: remoting bound to <paramref name="Host"/>:<paramref name="Port"/>
/// (loopback by default; port 0 picks a free one), the seed nodes, the node's roles, the split-brain resolver
/// (keep-majority), the coordinator singleton on the "seed" role, optional TLS, and Scale's wire serializer.
/// </summary>
internal sealed record ClusterConfig(string Host, int Port, IReadOnlyList<string> SeedNodes, IReadOnlyList<string> Roles)
{
    public const string SystemName = "scale";
    public const string SeedRole = "seed";
    public const string WorkerRole = "worker";
    public const string ManagerName = "sweeps";

    /// <summary>The name other nodes use for this one when it binds to a wildcard address (0.0.0.0 in a container).</summary>
    public string? PublicHost { get; init; }
    public RemotingTls? Tls { get; init; }
    /// <summary>
    /// TLS whose certificate is given in memory (an <see cref="Akka.Remote.Transport.DotNetty.DotNettySslSetup"/> beside this
    /// configuration), not from a file: a local run's certificate made for the run (<see cref="LocalRunTls"/>).
    /// </summary>
    public bool TlsFromSetup { get; init; }
    /// <summary>How long the split-brain resolver waits for a stable membership before downing unreachable nodes.</summary>
    public TimeSpan StableAfter { get; init; } = TimeSpan.FromSeconds(7);
    /// <summary>How long a node may miss heartbeats before it is unreachable.</summary>
    public TimeSpan HeartbeatPause { get; init; } = TimeSpan.FromSeconds(4);
    /// <summary>The largest remote message (Akka's default is 128,000 bytes): a sweep's state crosses whole, and a 1,000-trial sweep's is megabytes.</summary>
    public const int MaxFrameBytes = 32 * 1024 * 1024;

    public static string Protocol(bool tls) => tls ? "akka.ssl.tcp" : "akka.tcp";

    /// <summary>A seed given as host:port becomes a full address; a full akka address is kept.</summary>
    public static string SeedAddress(string seed, bool tls)
    {
        seed = seed.Trim();
        if (seed.StartsWith("akka", StringComparison.Ordinal)) return seed.TrimEnd('/');
        var parts = seed.Split(':');
        if (parts.Length != 2 || !int.TryParse(parts[1], out int port) || port is < 1 or > 65535)
            throw new ArgumentException($"a seed must be host:port or akka.tcp://{SystemName}@host:port, got '{seed}'.");
        return $"{Protocol(tls)}://{SystemName}@{parts[0]}:{port}";
    }

    /// <summary>Parses host:port for the remoting bind address (port 0: any free port).</summary>
    public static (string Host, int Port) ParseBind(string bind)
    {
        var at = bind.LastIndexOf(':');
        if (at <= 0 || !int.TryParse(bind[(at + 1)..], out int port) || port is < 0 or > 65535)
            throw new ArgumentException($"--bind must be host:port (e.g. 127.0.0.1:4053; port 0 picks a free one), got '{bind}'.");
        return (bind[..at], port);
    }

    /// <summary>
    /// The actor paths a peer may select under untrusted mode: the cluster's own daemons (joining, gossip, heartbeats,
    /// remote death watch), the sweep manager's singleton manager and the singleton it hosts (hand-over and the proxy's
    /// identification), and the client receptionist with the pub-sub mediator it routes through.
    /// </summary>
    public static readonly IReadOnlyList<string> TrustedSelectionPaths =
    [
        "/system/cluster/core/daemon", "/system/cluster/heartbeatReceiver", "/system/remote-watcher",
        $"/user/{ManagerName}", $"/user/{ManagerName}/singleton",
        "/system/receptionist", "/system/distributedPubSubMediator",
    ];

    public Config ToConfig()
    {
        static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
        var bindings = new StringBuilder();
        foreach (var type in WireSerializer.Manifests.Keys)
            bindings.AppendLine($"      {Quote($"{type.FullName}, {type.Assembly.GetName().Name}")} = scale-wire");
        var tls = Tls is null ? TlsFromSetup ? "enable-ssl = true\n        ssl.suppress-validation = false" : "enable-ssl = false" : $$"""
            enable-ssl = true
                    ssl {
                      suppress-validation = {{(Tls.SuppressValidation ? "true" : "false")}}
                      certificate {
                        path = {{Quote(Path.GetFullPath(Tls.CertificatePath))}}
                        password = {{Quote(Tls.Password ?? "")}}
                        use-thumbprint-over-file = false
                        flags = [ "default-key-set" ]
                      }
                    }
            """;
        return ConfigurationFactory.ParseString($$"""
            akka {
              actor {
                provider = cluster
                serializers.scale-wire = "Scale.Actors.Cluster.WireSerializer, Scale.Actors"
                # Akka's default serializer (type names in JSON) is replaced: nothing of Scale's uses it, and no peer may.
                serializers.json = "Scale.Actors.Cluster.RefusingDefaultSerializer, Scale.Actors"
                # Akka's small messages, except a failure naming an exception type for this node to instantiate.
                serializers.akka-misc = "Scale.Actors.Cluster.GuardedMiscSerializer, Scale.Actors"
                # Akka's system messages, except those carrying an exception type (a child's failure and its parent's answer).
                serializers.akka-system-msg = "Scale.Actors.Cluster.GuardedSystemMessageSerializer, Scale.Actors"
                serialization-identifiers { "Scale.Actors.Cluster.WireSerializer, Scale.Actors" = {{WireSerializer.Id}} }
                serialization-bindings {
            {{bindings}}
                }
              }
              remote {
                log-remote-lifecycle-events = off
                # A peer may not deploy actors here, send harmful system messages (PoisonPill, Kill's kin), or select actors by
                # path beyond those the cluster, its singleton and its client receptionist are reached at.
                untrusted-mode = on
                trusted-selection-paths = [{{string.Join(", ", TrustedSelectionPaths.Select(Quote))}}]
                dot-netty.tcp {
                  hostname = {{Quote(Host)}}
                  port = {{Port}}
                  # A sweep's state (every trial with its curve and scores) crosses as one message: 1,000 trials are a few MB.
                  maximum-frame-size = {{MaxFrameBytes}}b
                  send-buffer-size = {{MaxFrameBytes}}b
                  receive-buffer-size = {{MaxFrameBytes}}b
                  {{(PublicHost is null ? "" : $"public-hostname = {Quote(PublicHost)}")}}
                  {{tls}}
                }
              }
              cluster {
                seed-nodes = [{{string.Join(", ", SeedNodes.Select(Quote))}}]
                roles = [{{string.Join(", ", Roles.Select(Quote))}}]
                downing-provider-class = "Akka.Cluster.SBR.SplitBrainResolverProvider, Akka.Cluster"
                split-brain-resolver {
                  active-strategy = keep-majority
                  stable-after = {{(int)StableAfter.TotalMilliseconds}}ms
                }
                failure-detector.acceptable-heartbeat-pause = {{(int)HeartbeatPause.TotalMilliseconds}}ms
                run-coordinated-shutdown-when-down = on
                singleton.role = {{SeedRole}}
                singleton-proxy.role = {{SeedRole}}
                singleton-proxy.buffer-size = 1000
                # Akka.NET 1.5 starts this warning's timer with no delay, so it fires before the first member is even Up; a
                # seed's readiness probe says when the sweep manager does not answer.
                singleton-proxy.log-singleton-identification-failure = off
                log-info = off
              }
              coordinated-shutdown.exit-clr = off
            }
            """);
    }
}

/// <summary>
/// The TLS of a local `scale run`'s one-node cluster: a certificate made for the run, held in memory only, and trusted
/// by its thumbprint alone (mutual authentication). The run's own process is its only member, so nothing else — a stock
/// `scale worker`, a raw TCP client, another user's process — can join it or deliver a message to it.
/// </summary>
internal static class LocalRunTls
{
    public static Akka.Remote.Transport.DotNetty.DotNettySslSetup Create()
    {
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest(
            "CN=scale local run", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        var now = DateTimeOffset.UtcNow;
        using var made = request.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(10));
        // Through PKCS#12 (never written anywhere), so that TLS gets the certificate with its private key in the form it loads.
        var certificate = X509CertificateLoader.LoadPkcs12(made.Export(X509ContentType.Pkcs12), null, X509KeyStorageFlags.EphemeralKeySet);
        var pinned = Akka.Remote.Transport.DotNetty.CertificateValidation.PinnedCertificate(certificate.Thumbprint);
        return new Akka.Remote.Transport.DotNetty.DotNettySslSetup(certificate, suppressValidation: false, requireMutualAuthentication: true, pinned);
    }
}
