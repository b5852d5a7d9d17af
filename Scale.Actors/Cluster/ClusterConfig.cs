using System.Text;
using Akka.Configuration;

namespace Scale.Actors.Cluster;

/// <summary>TLS for remoting: a PKCS#12 certificate every node presents and trusts.</summary>
public sealed record RemotingTls(string CertificatePath, string? Password, bool SuppressValidation = false);

/// <summary>
/// Akka configuration of one cluster node: remoting bound to <paramref name="Host"/>:<paramref name="Port"/>
/// (loopback by default; port 0 picks a free one), the seed nodes, the node's roles, the split-brain resolver
/// (keep-majority), the coordinator singleton on the "seed" role, optional TLS, and Scale's wire serializer.
/// </summary>
public sealed record ClusterConfig(string Host, int Port, IReadOnlyList<string> SeedNodes, IReadOnlyList<string> Roles)
{
    public const string SystemName = "scale";
    public const string SeedRole = "seed";
    public const string WorkerRole = "worker";
    public const string ManagerName = "sweeps";

    /// <summary>The name other nodes use for this one when it binds to a wildcard address (0.0.0.0 in a container).</summary>
    public string? PublicHost { get; init; }
    public RemotingTls? Tls { get; init; }
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

    public Config ToConfig()
    {
        static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
        var bindings = new StringBuilder();
        foreach (var type in WireSerializer.Manifests.Keys)
            bindings.AppendLine($"      {Quote($"{type.FullName}, {type.Assembly.GetName().Name}")} = scale-wire");
        var tls = Tls is null ? "enable-ssl = false" : $$"""
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
                serialization-identifiers { "Scale.Actors.Cluster.WireSerializer, Scale.Actors" = {{WireSerializer.Id}} }
                serialization-bindings {
            {{bindings}}
                }
              }
              remote {
                log-remote-lifecycle-events = off
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
                log-info = off
              }
              coordinated-shutdown.exit-clr = off
            }
            """);
    }
}
