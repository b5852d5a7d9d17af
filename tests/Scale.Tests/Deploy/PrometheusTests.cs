using System.Diagnostics;
using System.Text.Json;
using Scale.Tests.Host;
using Scale.Tests.Model;
using Xunit.Abstractions;

namespace Scale.Tests.Deploy;

/// <summary>
/// Prometheus from Debian's package against real `scale` nodes: every node's /metrics passes `promtool check metrics`,
/// a real Prometheus scrapes a seed (bound beyond loopback, so with the bearer token) and a worker and answers PromQL
/// with the trials by state; deploy/prometheus's alert rules and scrape configuration pass promtool's checks and tests.
/// </summary>
public sealed class PrometheusTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Start = TimeSpan.FromMinutes(3);

    private static string? Missing()
        => DebianPackages.Ensure(() => File.Exists("/usr/bin/prometheus") && File.Exists("/usr/bin/promtool"), "prometheus")
            ? null
            : "Prometheus is not installed (Debian's prometheus, with promtool) and could not be installed";

    private static ExternalCommand.Result Promtool(string? input, params string[] arguments)
        => ExternalCommand.Run("/usr/bin/promtool", arguments, input: input, workingDirectory: Repository.File("deploy", "prometheus"));

    [SkippableFact]
    [Trait("Category", "Deploy")]
    public void The_shipped_alert_rules_and_scrape_configuration_pass_promtools_checks_and_the_rules_tests()
    {
        var missing = Missing();
        Skip.If(missing is not null, $"Prometheus test skipped: {missing}.");
        var rules = Promtool(null, "check", "rules", "alerts.yml");
        Assert.True(rules.ExitCode == 0, rules.Output);
        var tests = Promtool(null, "test", "rules", "alerts.test.yml");
        Assert.True(tests.ExitCode == 0, tests.Output);
        // The example's credentials file lives on the Prometheus server, not here: its syntax and rule files are checked.
        var config = Promtool(null, "check", "config", "--syntax-only", "prometheus.yml");
        Assert.True(config.ExitCode == 0, config.Output);
    }

    [SkippableFact]
    [Trait("Category", "Deploy")]
    public void A_real_prometheus_scrapes_a_seed_with_its_token_and_a_worker_and_counts_each_trial_once()
    {
        var missing = Missing();
        Skip.If(missing is not null, $"Prometheus test skipped: {missing}.");
        using var dir = new TempDirectory();
        string shared = dir.Combine("shared"), seedAddress = $"127.0.0.1:{FreePorts.Next()}", token = "a-long-enough-bearer-token-0123";
        var tokenFile = dir.Combine("token");
        File.WriteAllText(tokenFile, token + "\n");
        var sweep = dir.Combine("scraped.hocon");
        File.WriteAllText(sweep, SweepProcessTestsSweep.Tiny.Replace("name = recover", "name = scraped"));

        // The seed's endpoint bound beyond loopback wants the token; the worker's on loopback does not.
        using var seed = new NodeProcess("seed", "seed", "--bind", seedAddress, "--data-dir", shared, "--http", "0.0.0.0:0", "--http-token-file", tokenFile);
        var seedPort = seed.WaitFor(l => l.StartsWith("Operators' endpoint: ", StringComparison.Ordinal), Start, "the seed's endpoint").Split(' ')[2].Split(':')[^1];
        using var worker = new NodeProcess("worker", "worker", "--seeds", seedAddress, "--data-dir", shared, "--threads", "1", "--http", "127.0.0.1:0");
        var workerUrl = worker.WaitFor(l => l.StartsWith("Operators' endpoint: ", StringComparison.Ordinal), Start, "the worker's endpoint").Split(' ')[2];
        using (var client = new NodeProcess("run --cluster", "run", "--cluster", seedAddress, sweep, "--plain"))
            Assert.Equal(0, client.WaitForExit(TimeSpan.FromMinutes(10)));

        // Each node's exposition passes promtool's checks (format and naming conventions).
        using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) })
        {
            var workerMetrics = http.GetStringAsync(workerUrl + "/metrics").Result;
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
            var seedMetrics = http.GetStringAsync($"http://127.0.0.1:{seedPort}/metrics").Result;
            foreach (var (node, text) in new[] { ("seed", seedMetrics), ("worker", workerMetrics) })
            {
                var checkedMetrics = Promtool(text, "check", "metrics");
                Assert.True(checkedMetrics.ExitCode == 0, $"{node}: {checkedMetrics.Output}\n{text}");
            }
            Assert.Contains("scale_trials{", seedMetrics);
            Assert.DoesNotContain("scale_trials{", workerMetrics);   // cluster-wide series from the manager's node only
        }

        var prometheusPort = FreePorts.Next();
        var config = dir.Combine("prometheus.yml");
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
            rule_files:
              - {Repository.File("deploy", "prometheus", "alerts.yml")}
            scrape_configs:
              - job_name: scale-seeds
                authorization:
                  credentials_file: {tokenFile}
                static_configs:
                  - targets: ["127.0.0.1:{seedPort}"]
              - job_name: scale-workers
                static_configs:
                  - targets: ["{workerUrl["http://".Length..]}"]
            """);
        var start = new ProcessStartInfo("/usr/bin/prometheus",
            [$"--config.file={config}", $"--storage.tsdb.path={dir.Combine("tsdb")}", $"--web.listen-address=127.0.0.1:{prometheusPort}"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using var prometheus = Process.Start(start)!;
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        prometheus.OutputDataReceived += (_, e) => { if (e.Data is not null) log.Enqueue(e.Data); };
        prometheus.ErrorDataReceived += (_, e) => { if (e.Data is not null) log.Enqueue(e.Data); };
        prometheus.BeginOutputReadLine();
        prometheus.BeginErrorReadLine();
        try
        {
            using var api = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{prometheusPort}"), Timeout = TimeSpan.FromSeconds(30) };
            // The result of an instant query: each series's labels and value.
            List<(Dictionary<string, string> Labels, double Value)> Query(string promql)
            {
                try
                {
                    var body = JsonDocument.Parse(api.GetStringAsync("/api/v1/query?query=" + Uri.EscapeDataString(promql)).Result).RootElement;
                    return body.GetProperty("data").GetProperty("result").EnumerateArray().Select(r => (
                        r.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!),
                        double.Parse(r.GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture))).ToList();
                }
                catch (AggregateException e) when (e.InnerException is HttpRequestException)
                {
                    return [];   // Prometheus not listening yet
                }
            }
            var clock = Stopwatch.StartNew();
            // Polled every half second: Prometheus scrapes every second and has no event to wait on.
            while (Query("sum(up)") is not [{ Value: 2 }] || Query("scale_trials").Count == 0)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(3), "Prometheus never scraped both nodes in 3 minutes:\n" + string.Join("\n", log.TakeLast(20)));
                Thread.Sleep(500);
            }
            var byState = Query("sum by (state) (scale_trials{sweep=\"scraped\"})").ToDictionary(r => r.Labels["state"], r => r.Value);
            Assert.Equal(new Dictionary<string, double> { ["pending"] = 0, ["running"] = 0, ["completed"] = 4, ["failed"] = 0, ["stopped"] = 0 }, byState);
            Assert.Equal("scale-seeds", Assert.Single(Query("count by (job) (scale_trials)")).Labels["job"]);   // one node exports them
            Assert.Equal(0, Assert.Single(Query("sum(scale_trial_attempts_failed_total)")).Value);
            Assert.Equal(2, Assert.Single(Query("sum(scale_cluster_members{status=\"up\"})")).Value);
            Assert.Equal(2, Query("target_info{service_name=\"scale\"}").Count);
            // The shipped rules load and evaluate against the live series: healthy, and none firing on a healthy cluster.
            var rules = JsonDocument.Parse(api.GetStringAsync("/api/v1/rules").Result).RootElement.GetProperty("data").GetProperty("groups")
                .EnumerateArray().SelectMany(g => g.GetProperty("rules").EnumerateArray()).ToList();
            Assert.Equal(7, rules.Count);
            Assert.All(rules, r => Assert.NotEqual("err", r.GetProperty("health").GetString()));
            Assert.Empty(Query("ALERTS{alertstate=\"firing\"}"));
        }
        catch
        {
            output.WriteLine(string.Join("\n", log));
            throw;
        }
        finally
        {
            prometheus.Kill();
            prometheus.WaitForExit();
        }
    }
}
