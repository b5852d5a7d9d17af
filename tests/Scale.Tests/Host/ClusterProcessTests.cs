using System.Diagnostics;
using Npgsql;
using Scale.Tests.Model;
using Scale.Tests.Persistence;
using Xunit.Abstractions;

namespace Scale.Tests.Host;

/// <summary>A `scale` child process whose stdout lines can be awaited.</summary>
internal sealed class NodeProcess : IDisposable
{
    private readonly List<string> lines = new();
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Seen)> waiting = new();
    private readonly Process process;

    public NodeProcess(string name, params string[] arguments)
    {
        Name = name;
        process = ScaleProcess.Start(OnLine, arguments);
    }

    public string Name { get; }
    public int Id => process.Id;

    private void OnLine(string line)
    {
        lock (lines)
        {
            lines.Add(line);
            foreach (var w in waiting.Where(w => w.Match(line)).ToList())
            {
                waiting.Remove(w);
                w.Seen.TrySetResult(line);
            }
        }
    }

    /// <summary>The first stdout line (already printed or still to come) that matches.</summary>
    public string WaitFor(Func<string, bool> match, TimeSpan timeout, string what)
    {
        TaskCompletionSource<string> seen;
        lock (lines)
        {
            if (lines.FirstOrDefault(match) is { } already) return already;
            seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            waiting.Add((match, seen));
        }
        var exited = process.WaitForExitAsync();
        if (Task.WaitAny([seen.Task, exited], timeout) == 0) return seen.Task.Result;
        throw new TimeoutException($"{Name}: no line for '{what}' within {timeout.TotalSeconds:0} s{(process.HasExited ? $" (exited {process.ExitCode})" : "")}:\n{Output}");
    }

    public int WaitForExit(TimeSpan timeout)
    {
        if (!process.WaitForExit(timeout)) throw new TimeoutException($"{Name} did not exit within {timeout.TotalSeconds:0} s:\n{Output}");
        process.WaitForExit();   // the output's end
        return process.ExitCode;
    }

    public string Output
    {
        get
        {
            lock (lines) return string.Join("\n", lines);
        }
    }

    public void Kill() => process.Kill();   // SIGKILL, as a crash

    /// <summary>SIGTERM, as an orchestrator stopping a container.</summary>
    public void Terminate()
    {
        using var kill = Process.Start("kill", ["-TERM", process.Id.ToString()]);
        kill.WaitForExit();
    }

    public void Dispose()
    {
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        process.Dispose();
    }
}

/// <summary>
/// Real `scale seed`, `scale worker` and `scale run --cluster` processes on 127.0.0.1 with a PostgreSQL journal:
/// a worker SIGKILLed mid-trial, and the seed hosting the coordinator SIGKILLed while a second seed is up. Each
/// sweep must end with every trial completed exactly once (one completion event per trial in the journal) and with
/// the same scores as a single-machine run of the same sweep.
/// </summary>
public sealed class ClusterProcessTests(PostgresServer postgres, ITestOutputHelper output) : IClassFixture<PostgresServer>
{
    private static readonly TimeSpan Start = TimeSpan.FromMinutes(3);
    private static readonly TimeSpan Sweep = TimeSpan.FromMinutes(8);

    /// <summary>The process tests' tiny sweep, with trials long enough (600 steps) to be killed in the middle of.</summary>
    private static string SweepText(string name) => SweepProcessTests.TinySweepText
        .Replace("name = recover", $"name = {name}").Replace("max-concurrent = 1", "max-concurrent = 2")
        .Replace("steps = 60", "steps = 600").Replace("checkpoint-every = 5", "checkpoint-every = 20");

    /// <summary>trial id → the scores that must not depend on where or how often a trial ran.</summary>
    /// <summary>
    /// The sweep named <paramref name="sweep"/> in a node's /api/sweeps once it satisfies <paramref name="until"/> (the view
    /// refreshes every 2 s); fails with the last answer after <paramref name="within"/>.
    /// </summary>
    private static System.Text.Json.JsonElement SweepInApi(string endpoint, string sweep, Func<System.Text.Json.JsonElement, bool> until, TimeSpan within)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var deadline = DateTime.UtcNow + within;
        string last = "";
        while (true)
        {
            try
            {
                last = http.GetStringAsync($"http://{endpoint}/api/sweeps").GetAwaiter().GetResult();
                foreach (var w in System.Text.Json.JsonDocument.Parse(last).RootElement.EnumerateArray())
                    if (w.GetProperty("name").GetString() == sweep && until(w)) return w.Clone();
            }
            catch (HttpRequestException)
            {
                // the endpoint is not up yet
            }
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException($"/api/sweeps never showed {sweep} as expected; last answer: {last}");
            Thread.Sleep(200);   // polling an HTTP view until a bound, not synchronising on time
        }
    }

    private static Dictionary<string, string> Scores(string csv)
    {
        var rows = csv.Split('\n', StringSplitOptions.RemoveEmptyEntries).SkipWhile(l => !l.StartsWith("trial,method,", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(rows);
        var header = rows[0].Split(',');
        int Column(string name) => Array.IndexOf(header, name);
        var result = new Dictionary<string, string>();
        foreach (var cells in rows.Skip(1).Select(r => r.Split(',')).TakeWhile(c => c.Length == header.Length))
        {
            result[cells[0]] = string.Join(" ", new[] { "state", "retention", "acquisition", "forgetting", "final_loss" }.Select(c => cells[Column(c)]));
        }
        return result;
    }

    private Dictionary<string, string> SingleMachineRun(TempDirectory dir, string name)
    {
        var file = dir.Combine($"{name}-local.hocon");
        File.WriteAllText(file, SweepText(name));
        var run = ScaleProcess.Run("run", file, "--data-dir", dir.Combine("local"), "--threads", "1", "--http", "off", "--plain");
        Assert.True(run.ExitCode == 0, run.Stderr + run.Stdout);
        var results = ScaleProcess.Run("results", name, "--format", "csv", "--data-dir", dir.Combine("local"));
        return Scores(results.Stdout);
    }

    private static long Count(string database, string sql)
    {
        using var connection = new NpgsqlConnection(database);
        connection.Open();
        using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(command.ExecuteScalar());
    }

    private static void EachTrialCompletedOnce(string database, string sweep, int trials)
    {
        Assert.Equal(trials, Count(database, $"SELECT count(*) FROM journal WHERE persistence_id = 'sweep-{sweep}' AND manifest = 'trial-completed.v2'"));
        Assert.Equal(trials, Count(database,
            $"SELECT count(DISTINCT convert_from(message, 'UTF8')::json->>'trial_id') FROM journal WHERE persistence_id = 'sweep-{sweep}' AND manifest = 'trial-completed.v2'"));
    }

    [Fact]
    public void A_worker_killed_mid_trial_loses_nothing_its_trial_resumes_on_the_other_worker_and_the_scores_equal_a_single_machine_run()
    {
        using var dir = new TempDirectory();
        var database = postgres.NewDatabase();
        using var cluster = TwoWorkers.Start(dir, database, "workers");
        var (client, victim, survivor, survivorAddress, routeId) = (cluster.Client, cluster.RouteWorker, cluster.OtherWorker, cluster.OtherAddress, cluster.RouteId);

        // Kill whichever worker trains route, once route has a checkpoint at step 100 or later.
        client.WaitFor(l => l.StartsWith($"trial {routeId} checkpoint at step ", StringComparison.Ordinal)
                            && int.Parse(l.Split(' ')[^1]) >= 100, Sweep, "route checkpoint ≥ 100");
        victim.Kill();
        var killed = Stopwatch.StartNew();
        var resumed = client.WaitFor(l => l.StartsWith($"trial {routeId} running on {survivorAddress}", StringComparison.Ordinal), Sweep, "route resumed on the survivor");
        output.WriteLine($"worker killed → route running again on the other worker after {killed.Elapsed.TotalSeconds:0.0} s (seen by the client's 2-s poll): {resumed}");
        Assert.Contains("(attempt 2, resumes from step", resumed);

        Assert.Equal(0, client.WaitForExit(Sweep));
        var scores = Scores(client.Output);
        Assert.Equal(4, scores.Count);
        Assert.All(scores.Values, s => Assert.StartsWith("completed ", s));
        EachTrialCompletedOnce(database, "workers", 4);
        Assert.Equal(1, Count(database, "SELECT count(*) FROM journal WHERE persistence_id = 'sweep-workers' AND manifest = 'trial-requeued.v1'"));
        Assert.Equal(0, Count(database, "SELECT count(*) FROM journal WHERE persistence_id = 'sweep-workers' AND manifest IN ('trial-retrying.v1', 'trial-failed.v1')"));
        Assert.Equal(SingleMachineRun(dir, "workers"), scores);
        Assert.Contains("Sweep workers: nothing left for this worker.", survivor.Output);
    }

    /// <summary>
    /// A partition stand-in: the worker training route is frozen (SIGSTOP) for 20 s, long enough to be taken for lost and
    /// downed; its trial resumes on the other worker. When it thaws it must neither record nor write anything of the trial:
    /// it finds itself removed and stops, and the trial's checkpoints are all the new attempt's (the fence).
    /// </summary>
    [Fact]
    [Trait("Category", "FaultInjection")]
    public void A_worker_frozen_for_20_s_is_replaced_and_never_writes_into_the_trial_its_replacement_owns()
    {
        using var dir = new TempDirectory();
        var database = postgres.NewDatabase();
        using var cluster = TwoWorkers.Start(dir, database, "frozen");
        var (client, frozen, survivorAddress, routeId, shared) = (cluster.Client, cluster.RouteWorker, cluster.OtherAddress, cluster.RouteId, cluster.Shared);
        client.WaitFor(l => l.StartsWith($"trial {routeId} checkpoint at step ", StringComparison.Ordinal), Sweep, "route's first checkpoint");
        Signal("STOP", frozen.Id);
        var stopped = Stopwatch.StartNew();
        var resumed = client.WaitFor(l => l.StartsWith($"trial {routeId} running on {survivorAddress}", StringComparison.Ordinal), Sweep, "route resumed on the other worker");
        output.WriteLine($"worker frozen → route running on the other worker after {stopped.Elapsed.TotalSeconds:0.0} s: {resumed}");
        if (stopped.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(TimeSpan.FromSeconds(20) - stopped.Elapsed);   // the fault lasts 20 s
        Signal("CONT", frozen.Id);

        Assert.Equal(3, frozen.WaitForExit(Start));   // it was downed while frozen: it stops, saying so
        Assert.Equal(0, client.WaitForExit(Sweep));
        var scores = Scores(client.Output);
        Assert.All(scores.Values, v => Assert.StartsWith("completed ", v));
        EachTrialCompletedOnce(database, "frozen", 4);
        // The trial's directory belongs to the replacement: fence, final checkpoint, and no checkpoint of attempt 1 after attempt 2 began.
        var trial = Path.Combine(shared, "sweeps", "frozen", "trials", routeId);
        Assert.Equal("2", File.ReadAllText(Path.Combine(trial, Scale.Model.Checkpoints.CheckpointFence.FenceFile)));
        Assert.Contains("\"attempt\": 2", File.ReadAllText(Path.Combine(trial, "final", "state.json")));
        // Each attempt logs to a file of its own; the frozen one's holds no checkpoint after the replacement's first.
        var logs = Scale.Actors.Trainers.TrialLog.Files(trial).Select(Path.GetFileName).ToList();
        Assert.Equal(["log.1.jsonl", "log.2.jsonl"], logs);
        Assert.All(File.ReadLines(Path.Combine(trial, "log.2.jsonl")), l => Assert.Contains("\"attempt\":2", l));
        // Attempt 1 may have published a checkpoint before attempt 2 claimed the directory (and logged it only on thawing: a
        // log line is stamped when written); none after. The fence's record is appended under the directory's lock, in order.
        var record = Scale.Model.Checkpoints.CheckpointFence.ReadRecord(trial).Select(l => l[(l.IndexOf(' ') + 1)..]).ToList();
        int claimed = record.IndexOf("claimed by attempt 2");
        Assert.True(claimed >= 0, string.Join("\n", record));
        var late = record.Skip(claimed).Where(l => l.EndsWith(" by attempt 1", StringComparison.Ordinal)).ToList();
        Assert.True(late.Count == 0, $"attempt 1 published after attempt 2 claimed the trial ({resumed}):\n{string.Join("\n", record)}");
        Assert.Contains("final at step 600 published by attempt 2", record.Skip(claimed));
        Assert.Equal(SingleMachineRun(dir, "frozen"), scores);
    }

    private static void Signal(string signal, int pid)
    {
        using var kill = Process.Start("kill", [$"-{signal}", pid.ToString()]);
        kill.WaitForExit();
        Assert.Equal(0, kill.ExitCode);
    }

    [Fact]
    public void The_seed_hosting_the_coordinator_killed_mid_sweep_moves_it_to_the_second_seed_with_nothing_lost_or_duplicated()
    {
        using var dir = new TempDirectory();
        var database = postgres.NewDatabase();
        string shared = dir.Combine("shared"), seed1 = $"127.0.0.1:{FreePorts.Next()}", seed2 = $"127.0.0.1:{FreePorts.Next()}";
        var seeds = $"{seed1},{seed2}";
        var file = dir.Combine("failover.hocon");
        File.WriteAllText(file, SweepText("failover"));

        using var first = new NodeProcess("seed-1", "seed", "--bind", seed1, "--seeds", seeds, "--journal", database, "--data-dir", shared);
        first.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal), Start, "seed-1 up");
        using var second = new NodeProcess("seed-2", "seed", "--bind", seed2, "--seeds", seeds, "--journal", database, "--data-dir", shared);
        second.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal), Start, "seed-2 up");
        using var w1 = new NodeProcess("worker-1", "worker", "--seeds", seeds, "--data-dir", shared, "--threads", "1");
        using var w2 = new NodeProcess("worker-2", "worker", "--seeds", seeds, "--data-dir", shared, "--threads", "1");
        w1.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), Start, "worker-1 up");
        w2.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), Start, "worker-2 up");
        using var client = new NodeProcess("run --cluster", "run", "--cluster", seeds, file, "--plain");

        // The first seed is the oldest member: it hosts the singleton. Kill it once a trained trial has checkpointed.
        client.WaitFor(l => l.Contains(" checkpoint at step ", StringComparison.Ordinal) && int.Parse(l.Split(' ')[^1]) >= 100, Sweep, "a checkpoint at step ≥ 100");
        first.Kill();
        var killed = Stopwatch.StartNew();
        Assert.Equal(0, client.WaitForExit(Sweep));
        output.WriteLine($"seed-1 killed → sweep finished {killed.Elapsed.TotalSeconds:0.0} s later");
        second.WaitFor(l => l.Contains("sweep manager: 1 sweep(s) recovered from the journal", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "manager recovered on seed-2");

        var cluster = Scores(client.Output);
        Assert.Equal(4, cluster.Count);
        Assert.All(cluster.Values, s => Assert.StartsWith("completed ", s));
        EachTrialCompletedOnce(database, "failover", 4);
        Assert.Equal(0, Count(database, "SELECT count(*) FROM journal WHERE persistence_id = 'sweep-failover' AND manifest IN ('trial-retrying.v1', 'trial-failed.v1')"));
        Assert.Equal(SingleMachineRun(dir, "failover"), cluster);
    }

    [Fact]
    public void A_worker_told_to_stop_leaves_gracefully_and_its_trial_continues_on_the_other_worker_with_the_sqlite_journal()
    {
        using var dir = new TempDirectory();
        string shared = dir.Combine("shared"), seed = $"127.0.0.1:{FreePorts.Next()}";
        var file = dir.Combine("drain.hocon");
        File.WriteAllText(file, SweepText("drain"));

        using var seedNode = new NodeProcess("seed", "seed", "--bind", seed, "--data-dir", shared);   // the embedded SQLite journal
        seedNode.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal) && l.Contains("SQLite", StringComparison.Ordinal), Start, "seed up");
        using var w1 = new NodeProcess("worker-1", "worker", "--seeds", seed, "--data-dir", shared, "--threads", "1");
        using var w2 = new NodeProcess("worker-2", "worker", "--seeds", seed, "--data-dir", shared, "--threads", "1");
        var w1Address = Address(w1.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), Start, "worker-1 up"));
        w2.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), Start, "worker-2 up");
        using var client = new NodeProcess("run --cluster", "run", "--cluster", seed, file, "--plain");

        var running = client.WaitFor(l => l.Contains($"running on {w1Address}/", StringComparison.Ordinal) && !l.Contains("frozen-", StringComparison.Ordinal), Sweep, "a trained trial on worker-1");
        var trial = running.Split(' ')[1];
        client.WaitFor(l => l.StartsWith($"trial {trial} checkpoint at step ", StringComparison.Ordinal), Sweep, "its first checkpoint");
        w1.Terminate();

        Assert.Equal(0, w1.WaitForExit(Start));
        Assert.Contains("Leaving the cluster", w1.Output);
        var resumed = client.WaitFor(l => l.StartsWith($"trial {trial} running on ", StringComparison.Ordinal) && l.Contains("(attempt 2", StringComparison.Ordinal), Sweep, "resumed elsewhere");
        Assert.DoesNotContain(w1Address, resumed);
        Assert.Contains(", resumes from step ", resumed);
        Assert.Equal(0, client.WaitForExit(Sweep));
        var scores = Scores(client.Output);
        Assert.Equal(4, scores.Count);
        Assert.All(scores.Values, v => Assert.StartsWith("completed ", v));
    }

    [Fact]
    public void With_tls_the_nodes_and_the_client_speak_only_tls_and_a_plain_client_is_refused_with_a_hint()
    {
        using var dir = new TempDirectory();
        var certificate = dir.Combine("node.pfx");
        using (var rsa = System.Security.Cryptography.RSA.Create(2048))
        {
            var request = new System.Security.Cryptography.X509Certificates.CertificateRequest(
                "CN=127.0.0.1", rsa, System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1);
            using var self = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(2));
            File.WriteAllBytes(certificate, self.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pfx, "secret"));
        }
        string[] tls = ["--tls-certificate", certificate, "--tls-password", "secret", "--tls-insecure"];
        string shared = dir.Combine("shared"), seed = $"127.0.0.1:{FreePorts.Next()}";
        var file = dir.Combine("tls.hocon");
        File.WriteAllText(file, SweepProcessTests.TinySweepText.Replace("name = recover", "name = tls"));

        using var seedNode = new NodeProcess("seed", ["seed", "--bind", seed, "--data-dir", shared, .. tls]);
        var up = seedNode.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal), Start, "seed up");
        using var worker = new NodeProcess("worker", ["worker", "--seeds", seed, "--data-dir", shared, "--threads", "1", .. tls]);
        worker.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), Start, "worker up");
        using var client = new NodeProcess("run --cluster", ["run", "--cluster", seed, file, "--plain", .. tls]);
        Assert.Equal(0, client.WaitForExit(Sweep));
        var plain = ScaleProcess.Run("status", "--cluster", seed);

        Assert.StartsWith("Seed akka.ssl.tcp://scale@127.0.0.1:", up);
        Assert.Contains("Sweep tls: 4 trials: 4 completed", client.Output);
        Assert.Equal(3, plain.ExitCode);
        Assert.Contains("does the cluster use TLS", plain.Stderr);
    }

    [Fact]
    public void A_sweep_of_1000_trials_is_submitted_followed_and_trained_over_the_cluster()
    {
        using var dir = new TempDirectory();
        string shared = dir.Combine("shared"), seed = $"127.0.0.1:{FreePorts.Next()}";
        var file = dir.Combine("thousand.hocon");
        // 40 rates × 25 warm-ups of Preserve: 1,000 trials, the default max-trials. Its definition and its state cross
        // remoting whole (the state on every poll of the client), megabytes against Akka's default frame of 128,000 bytes.
        File.WriteAllText(file, SweepProcessTests.TinySweepText.Replace("name = recover", "name = thousand")
            .Replace("methods = [frozen, preserve, route, full]",
                     "methods = []\n search { g { methods = [preserve], grid { lr = [" + string.Join(", ", Enumerable.Range(1, 40).Select(i => $"{i}e-4")) +
                     "], warmup = [" + string.Join(", ", Enumerable.Range(0, 25)) + "] } } }"));

        using var seedNode = new NodeProcess("seed", ["seed", "--bind", seed, "--data-dir", shared]);
        seedNode.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal), Start, "seed up");
        using var worker = new NodeProcess("worker", ["worker", "--seeds", seed, "--data-dir", shared, "--threads", "1"]);
        worker.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), Start, "worker up");
        using var client = new NodeProcess("run --cluster", ["run", "--cluster", seed, file, "--plain"]);
        client.WaitFor(l => l.Contains(" completed: retention "), Sweep, "a trial of the 1,000 completed");
        var status = ScaleProcess.Run("status", "--cluster", seed, "thousand");

        Assert.True(status.ExitCode == 0, status.Stderr + status.Stdout);
        Assert.Contains("thousand: 1000 trials: ", status.Stdout);
        Assert.DoesNotContain(" 0 completed", status.Stdout.Split('\n')[0]);
        Assert.Equal(1000, status.Stdout.Split('\n').Count(l => l.TrimStart().StartsWith("preserve-", StringComparison.Ordinal)));
        output.WriteLine(status.Stdout.Split('\n')[0]);
    }

    [Fact]
    [Trait("Category", "FaultInjection")]
    public void A_sweep_a_worker_cannot_prepare_is_reported_and_the_worker_goes_on_with_the_next_sweep()
    {
        using var dir = new TempDirectory();
        string shared = dir.Combine("shared"), seed = $"127.0.0.1:{FreePorts.Next()}";
        // Text corpora that no node can see, inside the data roots (the data directory by default): the submission passes
        // (folders are read where the trials train), the preparation fails on the worker.
        string Text(string name, string old, string @new) => System.Text.RegularExpressions.Regex.Replace(SweepText(name), @"old \{[^}]*\}\s*new \{[^}]*\}",
            $"old {{ kind = text, folder = \"{old}\" }}\n new {{ kind = text, folder = \"{@new}\" }}");
        var bad = dir.Combine("bad.hocon");
        File.WriteAllText(bad, Text("unpreparable", Path.Combine(shared, "nowhere-old"), Path.Combine(shared, "nowhere-new")));
        // Folders outside the roots: refused at submission, before anything of it is journaled.
        var outside = dir.Combine("outside.hocon");
        File.WriteAllText(outside, Text("outside", dir.Combine("corpus-old"), dir.Combine("corpus-new")));
        var good = dir.Combine("good.hocon");
        File.WriteAllText(good, SweepText("good").Replace("steps = 600", "steps = 60"));

        string http = $"127.0.0.1:{FreePorts.Next()}";
        using var seedNode = new NodeProcess("seed", "seed", "--bind", seed, "--data-dir", shared, "--http", http);
        seedNode.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal), Start, "seed up");
        var refused = ScaleProcess.Run("run", "--cluster", seed, outside, "--plain");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("lies outside the directories this cluster reads data from", refused.Stderr);
        // The bad sweep is submitted first, so the worker takes it first (the oldest unfinished sweep).
        using var badClient = new NodeProcess("run --cluster bad", "run", "--cluster", seed, bad, "--plain");
        badClient.WaitFor(l => l.StartsWith("Sweep unpreparable submitted", StringComparison.Ordinal), Start, "bad sweep submitted");
        using var goodClient = new NodeProcess("run --cluster good", "run", "--cluster", seed, good, "--plain");
        goodClient.WaitFor(l => l.StartsWith("Sweep good submitted", StringComparison.Ordinal), Start, "good sweep submitted");
        using var worker = new NodeProcess("worker", "worker", "--seeds", seed, "--data-dir", shared, "--threads", "1");

        var said = worker.WaitFor(l => l.StartsWith("Sweep unpreparable cannot be prepared on this worker", StringComparison.Ordinal), Sweep, "the bad sweep reported");
        Assert.Contains("nowhere-old", said);
        Assert.Equal(0, goodClient.WaitForExit(Sweep));   // the good sweep finished on the same worker
        var scores = Scores(goodClient.Output);
        Assert.Equal(4, scores.Count);
        Assert.All(scores.Values, v => Assert.StartsWith("completed ", v));
        var status = ScaleProcess.Run("status", "--cluster", seed);
        Assert.True(status.ExitCode == 0, status.Stderr + status.Stdout);
        Assert.Contains("a worker could not prepare it: ", status.Stdout);
        Assert.Contains("nowhere-old", status.Stdout);
        Assert.Contains("good: 4 trials: 4 completed", status.Stdout);
        // The dashboard's API says so under the sweep too.
        var shown = SweepInApi(http, "unpreparable", w => w.TryGetProperty("unprepared", out var u) && u.ValueKind == System.Text.Json.JsonValueKind.String, Start);
        Assert.Contains("nowhere-old", shown.GetProperty("unprepared").GetString());
    }

    [Fact]
    public void A_cancelled_sweep_stops_on_its_workers_is_journaled_and_cannot_be_submitted_again()
    {
        using var dir = new TempDirectory();
        string shared = dir.Combine("shared"), seed = $"127.0.0.1:{FreePorts.Next()}";
        var file = dir.Combine("cancelled.hocon");
        File.WriteAllText(file, SweepText("cancelled").Replace("steps = 600", "steps = 60000"));

        string http = $"127.0.0.1:{FreePorts.Next()}";
        using var seedNode = new NodeProcess("seed", "seed", "--bind", seed, "--data-dir", shared, "--http", http);
        seedNode.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal), Start, "seed up");
        using var worker = new NodeProcess("worker", "worker", "--seeds", seed, "--data-dir", shared, "--threads", "1", "--http", "off");
        worker.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), Start, "worker up");
        using var client = new NodeProcess("run --cluster", "run", "--cluster", seed, file, "--plain");
        var running = client.WaitFor(l => l.Contains(" running on ", StringComparison.Ordinal) && !l.Contains("frozen-", StringComparison.Ordinal), Sweep, "a trained trial running");
        client.WaitFor(l => l.StartsWith($"trial {running.Split(' ')[1]} checkpoint at step ", StringComparison.Ordinal), Sweep, "its first checkpoint");

        var cancel = ScaleProcess.Run("cancel", "cancelled", "--cluster", seed);
        var again = ScaleProcess.Run("cancel", "cancelled", "--cluster", seed);

        Assert.True(cancel.ExitCode == 0, cancel.Stderr + cancel.Stdout);
        Assert.Contains("Sweep cancelled cancelled", cancel.Stdout);
        Assert.Contains("was already cancelled", again.Stdout);
        worker.WaitFor(l => l == "Sweep cancelled: nothing left for this worker.", Sweep, "the worker leaves the sweep");
        Assert.Equal(1, client.WaitForExit(Sweep));
        Assert.Contains("Sweep cancelled was cancelled on the cluster", client.Output);
        var status = ScaleProcess.Run("status", "--cluster", seed);
        Assert.Contains("cancelled: 4 trials: ", status.Stdout);
        Assert.Contains("; cancelled", status.Stdout);
        Assert.False(SweepInApi(http, "cancelled", w => w.GetProperty("cancelled").GetBoolean(), Start).GetProperty("finished").GetBoolean());
        var resubmit = ScaleProcess.Run("run", "--cluster", seed, file, "--plain");
        Assert.Equal(2, resubmit.ExitCode);
        Assert.Contains("was cancelled on this cluster; submit it under a new name", resubmit.Stderr);
        var unknown = ScaleProcess.Run("cancel", "nonesuch", "--cluster", seed);
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("No sweep 'nonesuch'", unknown.Stderr);
        // Journaled by the manager: a new manager (the seed started again) would recover it.
        using var journal = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(shared, "sweeps.db")};Pooling=False");
        journal.Open();
        using var count = journal.CreateCommand();
        count.CommandText = "SELECT count(*) FROM journal WHERE persistence_id = 'scale.sweep-manager' AND manifest = 'sweep-cancelled.v1'";
        Assert.Equal(1L, Convert.ToInt64(count.ExecuteScalar()));
    }

    [Fact]
    [Trait("Category", "FaultInjection")]
    public async Task A_peer_can_neither_deploy_an_actor_on_a_node_nor_reach_one_beyond_the_trusted_paths_nor_stop_one()
    {
        using var dir = new TempDirectory();
        string shared = dir.Combine("shared"), seed = $"127.0.0.1:{FreePorts.Next()}";
        using var seedNode = new NodeProcess("seed", "seed", "--bind", seed, "--data-dir", shared, "--http", "off");
        var address = seedNode.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal) && l.Contains(" is up"), Start, "seed up").Split(' ')[1];

        // A stock Akka.NET system on the same machine: it speaks the protocol, but is not one of Scale's nodes.
        using var intruder = Akka.Actor.ActorSystem.Create("intruder", Akka.Configuration.ConfigurationFactory.ParseString("""
            akka.actor.provider = remote
            akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
            akka.loglevel = WARNING
            """));
        async Task<Akka.Actor.IActorRef?> Identify(Akka.Actor.ActorSelection selection, TimeSpan within)
        {
            try
            {
                return (await Akka.Actor.Futures.Ask<Akka.Actor.ActorIdentity>(selection, new Akka.Actor.Identify(1), within)).Subject;
            }
            catch (Akka.Actor.AskTimeoutException)
            {
                return null;   // dropped: nothing answers
            }
        }

        // The receptionist's path is trusted (clients reach it): it answers, so the intruder does reach the seed.
        Assert.NotNull(await Identify(intruder.ActorSelection($"{address}/system/receptionist"), TimeSpan.FromSeconds(60)));
        // The sweep manager itself is not: a selection of it is dropped.
        Assert.Null(await Identify(intruder.ActorSelection($"{address}/user/{Scale.Actors.Cluster.ClusterConfig.ManagerName}/singleton/manager"), TimeSpan.FromSeconds(10)));
        // Remote deployment is refused: no actor is created on the seed.
        var deployed = intruder.ActorOf(Akka.Actor.Props.Create<Akka.Event.DefaultLogger>()
            .WithDeploy(new Akka.Actor.Deploy(new Akka.Actor.RemoteScope(Akka.Actor.Address.Parse(address)))), "deployed");
        Assert.Null(await Identify(intruder.ActorSelection(deployed.Path), TimeSpan.FromSeconds(10)));
        // A PoisonPill to the trusted paths is dropped: the sweep manager and the receptionist still answer a client.
        intruder.ActorSelection($"{address}/user/{Scale.Actors.Cluster.ClusterConfig.ManagerName}").Tell(Akka.Actor.PoisonPill.Instance);
        intruder.ActorSelection($"{address}/system/receptionist").Tell(Akka.Actor.PoisonPill.Instance);
        Assert.NotNull(await Identify(intruder.ActorSelection($"{address}/system/receptionist"), TimeSpan.FromSeconds(60)));
        var status = ScaleProcess.Run("status", "--cluster", seed);
        Assert.True(status.ExitCode == 0, status.Stderr + status.Stdout);
        Assert.Contains("No sweeps were submitted", status.Stdout);
    }

    [Fact]
    public void With_a_pinned_ca_a_node_or_client_whose_certificate_does_not_chain_to_it_or_a_seed_whose_certificate_names_another_host_is_refused()
    {
        using var dir = new TempDirectory();
        using var caKey = System.Security.Cryptography.RSA.Create(2048);
        var caRequest = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=Scale test CA", caKey,
            System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509KeyUsageExtension(
            System.Security.Cryptography.X509Certificates.X509KeyUsageFlags.KeyCertSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(2));
        var caFile = dir.Combine("ca.cer");
        File.WriteAllBytes(caFile, ca.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Cert));
        // Each certificate names the host its node is reached at (127.0.0.1), as a node connecting to it checks.
        string Issue(string name, bool byCa, string host = "127.0.0.1")
        {
            using var key = System.Security.Cryptography.RSA.Create(2048);
            var request = new System.Security.Cryptography.X509Certificates.CertificateRequest($"CN={name}", key,
                System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1);
            var names = new System.Security.Cryptography.X509Certificates.SubjectAlternativeNameBuilder();
            if (System.Net.IPAddress.TryParse(host, out var ip)) names.AddIpAddress(ip);
            else names.AddDnsName(host);
            request.CertificateExtensions.Add(names.Build());
            using var issued = byCa
                ? System.Security.Cryptography.X509Certificates.RSACertificateExtensions.CopyWithPrivateKey(
                    request.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1), [1, 2, 3, (byte)name.Length]), key)
                : request.CreateSelfSigned(DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1));
            var path = dir.Combine($"{name}.pfx");
            File.WriteAllBytes(path, issued.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pfx, "secret"));
            return path;
        }
        var password = dir.Combine("password");
        File.WriteAllText(password, "secret\n");
        string[] Tls(string certificate) => ["--tls-certificate", certificate, "--tls-password-file", password, "--tls-ca", caFile];
        string shared = dir.Combine("shared"), seed = $"127.0.0.1:{FreePorts.Next()}";

        using var seedNode = new NodeProcess("seed", ["seed", "--bind", seed, "--data-dir", shared, .. Tls(Issue("seed", byCa: true))]);
        seedNode.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal), Start, "seed up");
        using var worker = new NodeProcess("worker", ["worker", "--seeds", seed, "--data-dir", shared, "--threads", "1", .. Tls(Issue("worker", byCa: true))]);
        worker.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), Start, "worker up");
        using var rogue = new NodeProcess("rogue worker", ["worker", "--seeds", seed, "--data-dir", shared, "--threads", "1", "--join-timeout", "20",
                                                           .. Tls(Issue("rogue", byCa: false))]);
        var good = ScaleProcess.Run(["status", "--cluster", seed, .. Tls(Issue("client", byCa: true))]);
        var refused = ScaleProcess.Run(["status", "--cluster", seed, .. Tls(Issue("rogue-client", byCa: false))]);

        Assert.True(good.ExitCode == 0, good.Stderr + good.Stdout);
        Assert.Contains("No sweeps were submitted", good.Stdout);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Equal(3, rogue.WaitForExit(Start));   // it never joins: the seed refuses its certificate
        Assert.DoesNotContain("is up", rogue.Output);
        Assert.DoesNotContain("Password", string.Join(" ", Tls("x")));   // the password travels in a file, not on the command line

        // A seed whose certificate is the CA's but names another host: a worker connecting to 127.0.0.1 refuses it.
        string elsewhere = $"127.0.0.1:{FreePorts.Next()}";
        using var misnamed = new NodeProcess("misnamed seed", ["seed", "--bind", elsewhere, "--data-dir", dir.Combine("elsewhere"), "--http", "off",
                                                               .. Tls(Issue("misnamed", byCa: true, host: "seed.elsewhere.example"))]);
        misnamed.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal), Start, "misnamed seed up");
        using var misled = new NodeProcess("misled worker", ["worker", "--seeds", elsewhere, "--data-dir", dir.Combine("elsewhere"), "--threads", "1",
                                                             "--join-timeout", "20", "--http", "off", .. Tls(Issue("misled", byCa: true))]);
        Assert.Equal(3, misled.WaitForExit(Start));
        Assert.DoesNotContain("is up", misled.Output);
    }

    /// <summary>A seed on PostgreSQL, two workers and a client following the long tiny sweep, once route is running on one of the workers.</summary>
    private sealed class TwoWorkers : IDisposable
    {
        private readonly NodeProcess seed, w1, w2;

        private TwoWorkers(NodeProcess seed, NodeProcess w1, NodeProcess w2, NodeProcess client, string shared)
            => (this.seed, this.w1, this.w2, Client, Shared) = (seed, w1, w2, client, shared);

        public NodeProcess Client { get; }
        public string Shared { get; }
        public string RouteId { get; private set; } = "";
        public NodeProcess RouteWorker { get; private set; } = null!;
        public NodeProcess OtherWorker { get; private set; } = null!;
        public string OtherAddress { get; private set; } = "";

        public static TwoWorkers Start(TempDirectory dir, string database, string sweep)
        {
            string shared = dir.Combine("shared"), seedAddress = $"127.0.0.1:{FreePorts.Next()}";
            var file = dir.Combine($"{sweep}.hocon");
            File.WriteAllText(file, SweepText(sweep));
            var started = new List<NodeProcess>();
            NodeProcess Node(string name, params string[] arguments)
            {
                var node = new NodeProcess(name, arguments);
                started.Add(node);
                return node;
            }
            try
            {
                var seed = Node("seed", "seed", "--bind", seedAddress, "--journal", database, "--data-dir", shared);
                seed.WaitFor(l => l.StartsWith("Seed ", StringComparison.Ordinal) && l.Contains(" is up"), ClusterProcessTests.Start, "seed up");
                var w1 = Node("worker-1", "worker", "--seeds", seedAddress, "--data-dir", shared, "--threads", "1");
                var w2 = Node("worker-2", "worker", "--seeds", seedAddress, "--data-dir", shared, "--threads", "1");
                var w1Address = Address(w1.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), ClusterProcessTests.Start, "worker-1 up"));
                var w2Address = Address(w2.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), ClusterProcessTests.Start, "worker-2 up"));
                var client = Node("run --cluster", "run", "--cluster", seedAddress, file, "--plain");
                var cluster = new TwoWorkers(seed, w1, w2, client, shared);
                var running = client.WaitFor(l => l.Contains("trial route-", StringComparison.Ordinal) && l.Contains("running on", StringComparison.Ordinal), Sweep, "route running");
                cluster.RouteId = running.Split(' ')[1];
                (cluster.RouteWorker, cluster.OtherWorker, cluster.OtherAddress) = running.Contains(w1Address) ? (w1, w2, w2Address) : (w2, w1, w1Address);
                return cluster;
            }
            catch
            {
                foreach (var node in started) node.Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            foreach (var node in new[] { Client, w1, w2, seed }) node.Dispose();
        }
    }

    private static string Address(string upLine) => upLine.Split(' ')[1];
}
