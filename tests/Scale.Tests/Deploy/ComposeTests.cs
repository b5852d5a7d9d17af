using System.Text.RegularExpressions;
using Npgsql;
using Scale.Tests.Host;
using Scale.Tests.Model;
using Scale.Tests.Persistence;
using Xunit.Abstractions;

namespace Scale.Tests.Deploy;

/// <summary>
/// The image and the compose file as a user runs them, on a Docker engine of the test's own: deploy/image/make-image.sh
/// builds `scale` with no registry (published here, a debootstrapped Debian base), docker-compose 1.29 starts the
/// shipped deploy/compose.yaml (two seeds and two workers on the host's network, mutual TLS from make-certs.sh, the
/// journal on Debian's PostgreSQL), a sweep is submitted from outside, the worker training a trial is killed, and every
/// trial completes exactly once.
/// </summary>
public sealed class ComposeTests(PostgresServer postgres, ITestOutputHelper output) : IClassFixture<PostgresServer>
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(10);

    [SkippableFact]
    [Trait("Category", "Deploy")]
    public void The_image_built_without_a_registry_runs_the_compose_cluster_and_a_killed_worker_loses_no_trial()
    {
        var missing = PrivateDocker.Missing();
        Skip.If(missing is not null, $"compose test skipped: {missing}.");
        using var dir = new TempDirectory();
        using var docker = new PrivateDocker(dir.Combine("docker"));
        var tag = $"scale-test:{Guid.NewGuid():N}"[..24];
        var image = docker.Run(Repository.File("deploy", "image", "make-image.sh"), "--tag", tag);
        output.WriteLine(image.Output);
        Assert.True(image.ExitCode == 0, image.Output);

        // The nodes run as the image's user (10001): it must read the certificate files.
        var tls = dir.Combine("tls");
        var made = docker.Run(Repository.File("deploy", "tls", "make-certs.sh"), tls, "127.0.0.1");
        Assert.True(made.ExitCode == 0, made.Output);
        Assert.Equal(0, docker.Run("chown", "-R", "10001", tls).ExitCode);
        var journal = postgres.NewDatabase();
        string seed1 = FreePorts.Next().ToString(System.Globalization.CultureInfo.InvariantCulture),
               seed2 = FreePorts.Next().ToString(System.Globalization.CultureInfo.InvariantCulture),
               token = "a-long-enough-bearer-token-0123";
        var environment = new Dictionary<string, string>
        {
            ["SCALE_IMAGE"] = tag, ["SCALE_TLS_DIR"] = tls, ["SCALE_JOURNAL"] = journal, ["SCALE_HTTP_TOKEN"] = token,
            ["SCALE_SEED1_PORT"] = seed1, ["SCALE_SEED2_PORT"] = seed2,
            ["SCALE_SEED1_HTTP"] = FreePorts.Next().ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["SCALE_SEED2_HTTP"] = FreePorts.Next().ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        var project = $"scaletest{Guid.NewGuid():N}"[..20];
        string[] Compose(params string[] arguments) => ["-p", project, "-f", Repository.File("deploy", "compose.yaml"), .. arguments];

        var sweep = dir.Combine("composed.hocon");
        File.WriteAllText(sweep, SweepProcessTestsSweep.Tiny.Replace("name = recover", "name = composed").Replace("steps = 60", "steps = 1200"));
        try
        {
            var up = docker.RunWith(environment, "docker-compose", Compose("up", "-d", "--scale", "worker=2"));
            Assert.True(up.ExitCode == 0, up.Output);
            string[] tlsFlags = ["--tls-certificate", Path.Combine(tls, "node.pfx"), "--tls-password-file", Path.Combine(tls, "password"), "--tls-ca", Path.Combine(tls, "ca.cer")];
            using var client = new NodeProcess("run --cluster", ["run", "--cluster", $"127.0.0.1:{seed1},127.0.0.1:{seed2}", sweep, "--plain", .. tlsFlags]);
            // The worker that took the first trained trial is killed (SIGKILL) as soon as the trial runs there. Finding which
            // container that is takes a few docker commands (18 s under CI's load), so a trial is 1,200 steps (about 45 s):
            // at 400 a trial once finished before the kill landed.
            var running = client.WaitFor(l => Regex.IsMatch(l, @"^trial (preserve|route|full)-\S+ running on "), Patience, "a trained trial running");
            var trial = running.Split(' ')[1];
            var address = Regex.Match(running, @"running on (?<address>\S+)/cpu").Groups["address"].Value;
            var workers = docker.RunWith(environment, "docker-compose", Compose("ps", "-q", "worker")).Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(2, workers.Length);
            var victim = Assert.Single(workers, w => docker.Run("docker", "logs", w).Output.Contains($"Worker {address} is up", StringComparison.Ordinal));
            Assert.Equal(0, docker.Run("docker", "kill", victim).ExitCode);

            Assert.Equal(0, client.WaitForExit(Patience));
            Assert.Contains("Sweep composed: 4 trials: 4 completed, 0 running, 0 pending, 0 failed.", client.Output);
            // The killed worker's trial ran again (attempt 2) on the other worker and completed once, as did every trial.
            Assert.Matches($@"(?m)^{trial},\w+,,completed,[^,]*,[^,]*,[^,]*,2,", client.Output);
            using var connection = new NpgsqlConnection(journal);
            connection.Open();
            using var command = new NpgsqlCommand("SELECT convert_from(message, 'UTF8')::json->>'trial_id' FROM journal " +
                                                  "WHERE persistence_id = 'sweep-composed' AND manifest = 'trial-completed.v2'", connection);
            var completed = new List<string>();
            using (var reader = command.ExecuteReader())
                while (reader.Read()) completed.Add(reader.GetString(0));
            Assert.Equal(4, completed.Count);
            Assert.Equal(4, completed.Distinct().Count());
        }
        catch
        {
            foreach (var name in docker.RunWith(environment, "docker-compose", Compose("ps", "-q")).Output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
                output.WriteLine($"--- {name}\n{string.Join("\n", docker.Run("docker", "logs", "--tail", "30", name).Output.Split('\n').TakeLast(30))}");
            output.WriteLine(docker.Logs());
            throw;
        }
        finally
        {
            docker.RunWith(environment, "docker-compose", Compose("down", "-v", "--timeout", "30"));
        }
    }
}
