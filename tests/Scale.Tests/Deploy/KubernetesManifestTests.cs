using System.Text.RegularExpressions;
using Scale.Tests.Host;
using YamlDotNet.RepresentationModel;

namespace Scale.Tests.Deploy;

/// <summary>
/// deploy/k8s checked statically, as no Kubernetes runs here and no schema can be downloaded: every object has its
/// kind's API version and required fields; workloads select their own pods; probes use the paths and ports a node
/// serves; every secret, key, volume and claim a pod refers to is defined (the secrets by the header's kubectl
/// commands); every file a command names lies under a mounted volume; and the `scale` options given exist.
/// </summary>
public sealed class KubernetesManifestTests
{
    private static readonly Dictionary<string, string> ApiVersions = new()
    {
        ["Namespace"] = "v1", ["Service"] = "v1", ["PersistentVolumeClaim"] = "v1", ["Secret"] = "v1",
        ["StatefulSet"] = "apps/v1", ["Deployment"] = "apps/v1", ["NetworkPolicy"] = "networking.k8s.io/v1",
    };

    private static readonly string[] Files = ["namespace.yaml", "postgres.yaml", "scale.yaml"];

    private static List<YamlMappingNode> Objects()
    {
        var objects = new List<YamlMappingNode>();
        foreach (var file in Files)
        {
            var stream = new YamlStream();
            using var reader = new StreamReader(Repository.File("deploy", "k8s", file));
            stream.Load(reader);
            objects.AddRange(stream.Documents.Select(d => d.RootNode).OfType<YamlMappingNode>());
        }
        return objects;
    }

    private static YamlNode? At(YamlNode node, params string[] path)
    {
        foreach (var key in path)
        {
            if (node is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out var next)) return null;
            node = next;
        }
        return node;
    }

    private static string? Text(YamlNode node, params string[] path) => (At(node, path) as YamlScalarNode)?.Value;

    private static IEnumerable<YamlNode> Items(YamlNode node, params string[] path) => At(node, path) is YamlSequenceNode list ? list.Children : [];

    /// <summary>The secrets and their keys the manifests' header comments create with kubectl.</summary>
    private static Dictionary<string, HashSet<string>> SecretsCreated()
    {
        var text = string.Join("\n", Files.Select(f => File.ReadAllText(Repository.File("deploy", "k8s", f))))
            .Replace("\\\n#", " ", StringComparison.Ordinal);
        var secrets = new Dictionary<string, HashSet<string>>();
        foreach (Match command in Regex.Matches(text, @"create secret generic (?<name>[a-z0-9-]+)(?<rest>[^\n]*)"))
            secrets[command.Groups["name"].Value] = Regex.Matches(command.Groups["rest"].Value, @"--from-(?:literal|file)=(?<key>[A-Za-z0-9._-]+)=")
                .Select(m => m.Groups["key"].Value).ToHashSet();
        return secrets;
    }

    [Fact]
    [Trait("Category", "Deploy")]
    public void Every_object_has_its_kinds_api_version_a_name_and_the_scale_namespace()
    {
        var objects = Objects();
        Assert.Equal(["Namespace", "Service", "StatefulSet", "PersistentVolumeClaim", "Service", "StatefulSet", "Deployment", "NetworkPolicy"],
                     objects.Select(o => Text(o, "kind")));
        foreach (var o in objects)
        {
            var kind = Text(o, "kind")!;
            Assert.True(ApiVersions.TryGetValue(kind, out var version), $"unexpected kind {kind}");
            Assert.Equal(version, Text(o, "apiVersion"));
            Assert.Matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", Text(o, "metadata", "name") ?? "");
            if (kind != "Namespace") Assert.Equal("scale", Text(o, "metadata", "namespace"));
        }
    }

    [Fact]
    [Trait("Category", "Deploy")]
    public void Workloads_select_their_pods_probe_served_paths_and_refer_only_to_defined_secrets_volumes_and_claims()
    {
        var objects = Objects();
        var secrets = SecretsCreated();
        var services = objects.Where(o => Text(o, "kind") == "Service").ToList();
        var claims = objects.Where(o => Text(o, "kind") == "PersistentVolumeClaim").Select(o => Text(o, "metadata", "name")).ToHashSet();
        var workloads = objects.Where(o => Text(o, "kind") is "StatefulSet" or "Deployment").ToList();
        Assert.Equal(["postgres", "seed", "worker"], workloads.Select(w => Text(w, "metadata", "name")));
        foreach (var workload in workloads)
        {
            var name = Text(workload, "metadata", "name");
            var labels = ((YamlMappingNode)At(workload, "spec", "template", "metadata", "labels")!).Children
                .ToDictionary(p => ((YamlScalarNode)p.Key).Value!, p => ((YamlScalarNode)p.Value).Value);
            foreach (var (key, value) in ((YamlMappingNode)At(workload, "spec", "selector", "matchLabels")!).Children)
                Assert.Equal(((YamlScalarNode)value).Value, labels.GetValueOrDefault(((YamlScalarNode)key).Value!));
            if (Text(workload, "kind") == "StatefulSet")
                Assert.Contains(services, s => Text(s, "metadata", "name") == Text(workload, "spec", "serviceName"));

            var pod = At(workload, "spec", "template", "spec")!;
            var volumes = Items(pod, "volumes").Select(v => Text(v, "name")!).ToHashSet();
            volumes.UnionWith(Items(workload, "spec", "volumeClaimTemplates").Select(v => Text(v, "metadata", "name")!));
            foreach (var volume in Items(pod, "volumes"))
            {
                if (Text(volume, "persistentVolumeClaim", "claimName") is { } claim) Assert.Contains(claim, claims);
                if (Text(volume, "secret", "secretName") is { } secret)
                {
                    Assert.True(secrets.ContainsKey(secret), $"{name}: secret {secret} is never created");
                    foreach (var item in Items(volume, "secret", "items")) Assert.Contains(Text(item, "key")!, secrets[secret]);
                }
            }
            var container = Assert.Single(Items(pod, "containers"));
            Assert.NotNull(Text(container, "image"));
            foreach (var variable in Items(container, "env"))
                if (At(variable, "valueFrom", "secretKeyRef") is { } reference)
                {
                    var secret = Text(reference, "name")!;
                    Assert.True(secrets.ContainsKey(secret), $"{name}: secret {secret} is never created");
                    Assert.Contains(Text(reference, "key")!, secrets[secret]);
                }
            var mounts = Items(container, "volumeMounts").Select(m => (Name: Text(m, "name")!, Path: Text(m, "mountPath")!)).ToList();
            Assert.All(mounts, m => Assert.Contains(m.Name, volumes));
            var ports = Items(container, "ports").Select(p => Text(p, "name")).ToHashSet();
            if (name == "postgres") continue;

            // Scale's pods: the probes ask the operators' endpoint's health paths on its named port.
            Assert.Equal("/health/live", Text(container, "livenessProbe", "httpGet", "path"));
            Assert.Equal("/health/ready", Text(container, "readinessProbe", "httpGet", "path"));
            Assert.Contains(Text(container, "livenessProbe", "httpGet", "port"), ports);
            Assert.Contains(Text(container, "readinessProbe", "httpGet", "port"), ports);
            var command = string.Join(" ", Items(container, "args").Select(a => ((YamlScalarNode)a).Value))
                + " " + string.Join(" ", Items(container, "env").Select(e => Text(e, "value")));
            Assert.DoesNotContain("--insecure-plaintext", command);   // remoting over mutual TLS
            // Every file the command names is under one of the container's mounts.
            foreach (Match file in Regex.Matches(command, @"(?<=--(?:http-token-file|tls-certificate|tls-password-file|tls-ca) )\S+"))
                Assert.True(mounts.Any(m => file.Value.StartsWith(m.Path + "/", StringComparison.Ordinal)), $"{name}: {file.Value} is not under a mount");
            // Every option is one the role's `scale` command has.
            var role = Regex.Match(command, @"scale\.dll (?<role>seed|worker) ").Groups["role"].Value;
            var help = ScaleProcess.Run(role, "--help").Stdout;
            foreach (Match option in Regex.Matches(command, @"(?<=\s)--[a-z-]+"))
                Assert.True(help.Contains(option.Value + " ", StringComparison.Ordinal), $"scale {role} has no option {option.Value}");
        }
    }

    [Fact]
    [Trait("Category", "Deploy")]
    public void Services_and_the_network_policy_select_pods_that_exist_and_ports_that_are_served()
    {
        var objects = Objects();
        var pods = objects.Where(o => Text(o, "kind") is "StatefulSet" or "Deployment")
            .Select(w => (App: Text(w, "spec", "template", "metadata", "labels", "app"),
                          Ports: Items(Assert.Single(Items(At(w, "spec", "template", "spec")!, "containers")), "ports")
                              .Select(p => Text(p, "containerPort")).ToHashSet())).ToList();
        foreach (var service in objects.Where(o => Text(o, "kind") == "Service"))
        {
            var app = Text(service, "spec", "selector", "app");
            var target = Assert.Single(pods, p => p.App == app);
            Assert.All(Items(service, "spec", "ports"), p => Assert.Contains(Text(p, "port"), target.Ports));
        }
        var policy = Assert.Single(objects, o => Text(o, "kind") == "NetworkPolicy");
        var apps = Items(Assert.Single(Items(policy, "spec", "podSelector", "matchExpressions")), "values").Select(v => ((YamlScalarNode)v).Value).ToList();
        Assert.All(apps, a => Assert.Contains(pods, p => p.App == a));
        Assert.All(Items(policy, "spec", "ingress").SelectMany(i => Items(i, "ports")),
                   p => Assert.Contains(pods, pod => pod.App != "postgres" && pod.Ports.Contains(Text(p, "port"))));
    }
}
