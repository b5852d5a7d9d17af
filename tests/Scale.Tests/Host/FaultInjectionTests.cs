using System.Diagnostics;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Scale.Tests.Model;
using Xunit.Abstractions;

namespace Scale.Tests.Host;

/// <summary>
/// The fault-injection suite (docs: deploy/README.md, "Fault injection"): real `scale` processes killed at random
/// moments, a worker frozen with SIGSTOP while the cluster takes it for lost, and journals damaged on disk. `.ci/run`
/// runs it in a reduced form (3 kills); SCALE_FAULT_KILLS=N and SCALE_FAULT_SEED=S run it larger or elsewhere.
/// </summary>
[Trait("Category", "FaultInjection")]
public sealed class FaultInjectionTests(ITestOutputHelper output)
{
    private static int Kills => int.TryParse(Environment.GetEnvironmentVariable("SCALE_FAULT_KILLS"), out var n) && n > 0 ? n : 3;
    private static int Seed => int.TryParse(Environment.GetEnvironmentVariable("SCALE_FAULT_SEED"), out var s) ? s : 20261201;

    /// <summary>The tiny sweep with scores during training, and a snapshot every 10 events so that recovery goes through snapshots too.</summary>
    private static string SweepFile(TempDirectory dir)
    {
        var file = dir.Combine("recover.hocon");
        File.WriteAllText(file, SweepProcessTests.TinySweepText.Replace("checkpoint-every = 5", "checkpoint-every = 5\n  evaluate-every = 4"));
        return file;
    }

    private static string[] Run(string file, string dataDir, string precision = "fp32")
        => ["run", file, "--data-dir", dataDir, "--threads", "1", "--http", "off", "--plain", "--snapshot-every", "10", "--precision", precision];

    private static JsonElement[] Results(string dataDir)
    {
        var results = ScaleProcess.Run("results", "recover", "--format", "json", "--data-dir", dataDir);
        Assert.True(results.ExitCode == 0, results.Stderr);
        return JsonDocument.Parse(results.Stdout).RootElement.EnumerateArray().ToArray();
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int SendSignal(int pid, int signal);

    private static long Count(string dataDir, string sql)
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(dataDir, "sweeps.db")};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar());
    }

    private static void Execute(string dataDir, string sql)
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(dataDir, "sweeps.db")};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>Every trial completed, with the reference's scores, final loss and score curve, bit for bit.</summary>
    private static void SameAsReference(JsonElement[] got, JsonElement[] want)
    {
        Assert.Equal(want.Select(t => t.GetProperty("trial").GetString()), got.Select(t => t.GetProperty("trial").GetString()));
        foreach (var (g, w) in got.Zip(want))
        {
            Assert.Equal("completed", g.GetProperty("state").GetString());
            foreach (var field in new[] { "retention", "acquisition", "forgetting", "final_loss", "curve" })
                Assert.Equal(w.GetProperty(field).ToString(), g.GetProperty(field).ToString());
        }
    }

    [Theory]
    [InlineData("fp32")]
    [InlineData("bf16")]   // mixed precision with the base resident in bf16 (these machines' CPU has bf16 units)
    public void SIGKILLs_at_random_moments_of_one_sweep_leave_every_trial_completed_once_with_the_uninterrupted_scores(string precision)
    {
        if (precision == "bf16" && !Scale.Model.Native.CpuFeatures.Bf16)
        {
            Assert.Equal(2, ScaleProcess.Run("run", "quickstart", "--precision", "bf16", "--http", "off").ExitCode);   // refused on a CPU without bf16 units
            return;
        }
        using var dir = new TempDirectory();
        var file = SweepFile(dir);
        string killed = dir.Combine("killed"), straight = dir.Combine("straight");
        var random = new Random(Seed);
        int kills = 0, attempts = 0;
        while (kills < Kills && attempts++ < 4 * Kills)
        {
            // Kill after a random number of progress lines: during the base's pre-training, mid-trial, around a checkpoint or a completion.
            int lines = random.Next(2, 40), seen = 0;
            var moment = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            using var run = ScaleProcess.Start(line =>
            {
                if (line.StartsWith("trial ", StringComparison.Ordinal) || line.StartsWith("[pretrain]", StringComparison.Ordinal) || line.StartsWith("sweep:", StringComparison.Ordinal))
                    if (Interlocked.Increment(ref seen) == lines) moment.TrySetResult(line);
            }, Run(file, killed, precision));
            if (Task.WaitAny([moment.Task, run.WaitForExitAsync()], TimeSpan.FromMinutes(6)) == 0)
            {
                run.Kill();   // SIGKILL
                run.WaitForExit();
                kills++;
                output.WriteLine($"kill {kills}: after line {lines}: {moment.Task.Result}");
            }
            else
            {
                run.WaitForExit();
                if (run.ExitCode == 0) break;   // the sweep finished before this moment came
                Assert.Fail($"scale run exited {run.ExitCode} on its own");
            }
        }
        var finish = ScaleProcess.Run(Run(file, killed, precision));
        var reference = ScaleProcess.Run(Run(file, straight, precision));
        Assert.True(finish.ExitCode == 0, finish.Stderr + finish.Stdout);
        Assert.True(reference.ExitCode == 0, reference.Stderr + reference.Stdout);

        output.WriteLine($"{kills} SIGKILLs (seed {Seed})");
        Assert.True(kills >= Math.Min(Kills, 1), "no kill landed before the sweep ended");
        var after = Results(killed);
        SameAsReference(after, Results(straight));
        foreach (var trial in after.Select(t => t.GetProperty("trial").GetString()))
            Assert.Equal(1, Count(killed, $"SELECT count(*) FROM journal WHERE persistence_id = 'sweep-recover' AND manifest = 'trial-completed.v2' " +
                                          $"AND CAST(message AS TEXT) LIKE '%\"trial_id\":\"{trial}\"%'"));
    }

    /// <summary>
    /// ASHA on the tiny experiment: six learning rates of Preserve, ranked on first-token acquisition at steps 8 and 24.
    /// Killed right after its first stop decision and resumed, the sweep reaches the decisions, scores and stopping
    /// steps of an uninterrupted run; `scale results` says where each stopped trial stopped.
    /// </summary>
    [Fact]
    public void A_sweep_under_asha_killed_after_a_stop_resumes_to_the_same_promotions_and_stops()
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("asha.hocon");
        File.WriteAllText(file, SweepProcessTests.TinySweepText
            .Replace("name = recover", "name = asha")
            .Replace("methods = [frozen, preserve, route, full]",
                     "search {\n    rates { methods = [preserve], grid { lr = [1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1] } }\n  }\n" +
                     "  evaluate-every = 4\n  scheduler { kind = asha, metric = acquisition-first-token, mode = max, grace-steps = 8, reduction = 3 }"));
        string killed = dir.Combine("killed"), straight = dir.Combine("straight");
        string[] Args(string dataDir) => ["run", file, "--data-dir", dataDir, "--threads", "1", "--http", "off", "--plain", "--snapshot-every", "10"];

        var moment = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using (var run = ScaleProcess.Start(line => { if (line.Contains(" stopped at step ", StringComparison.Ordinal)) moment.TrySetResult(line); }, Args(killed)))
        {
            Assert.True(Task.WaitAny([moment.Task, run.WaitForExitAsync()], TimeSpan.FromMinutes(6)) == 0, "the sweep ended without stopping a trial");
            run.Kill();   // SIGKILL, right after the decision was journaled and printed
            run.WaitForExit();
            output.WriteLine($"killed after: {moment.Task.Result}");
        }
        var finish = ScaleProcess.Run(Args(killed));
        var reference = ScaleProcess.Run(Args(straight));
        Assert.True(finish.ExitCode == 0, finish.Stderr + finish.Stdout);
        Assert.True(reference.ExitCode == 0, reference.Stderr + reference.Stdout);

        JsonElement[] Rows(string dataDir)
        {
            var results = ScaleProcess.Run("results", "asha", "--format", "json", "--data-dir", dataDir);
            Assert.True(results.ExitCode == 0, results.Stderr);
            return JsonDocument.Parse(results.Stdout).RootElement.EnumerateArray().ToArray();
        }
        var (after, want) = (Rows(killed), Rows(straight));
        Assert.Equal(want.Select(t => t.GetProperty("trial").GetString()), after.Select(t => t.GetProperty("trial").GetString()));
        foreach (var (g, w) in after.Zip(want))
            foreach (var field in new[] { "state", "stopped_at", "rungs", "retention", "acquisition", "forgetting", "curve" })
                Assert.Equal(w.GetProperty(field).ToString(), g.GetProperty(field).ToString());
        var stopped = want.Where(t => t.GetProperty("state").GetString() == "stopped").ToList();
        Assert.NotEmpty(stopped);
        Assert.Contains(want, t => t.GetProperty("state").GetString() == "completed");
        Assert.All(stopped, t => Assert.Contains(t.GetProperty("stopped_at").GetInt64(), new long[] { 8, 24 }));
        Assert.Contains($"stopped at {stopped[0].GetProperty("stopped_at").GetInt64()} ", reference.Stdout);   // the run's closing table
        var status = ScaleProcess.Run("status", "asha", "--data-dir", straight).Stdout;
        Assert.Contains($"{stopped.Count} stopped early", status);
        Assert.Contains($"stopped by the scheduler at step {stopped[0].GetProperty("stopped_at").GetInt64()}", status);
        Assert.Contains("; finished", status);
    }

    /// <summary>Starts a long run of the tiny sweep and returns once its first trial has checkpointed at step 10.</summary>
    private static (Process Run, List<string> Lines, List<string> Errors) StartLongRun(TempDirectory dir, string file, string data)
    {
        File.WriteAllText(file, SweepProcessTests.TinySweepText.Replace("steps = 60", "steps = 3000"));
        var checkpointed = new TaskCompletionSource();
        var lines = new List<string>();
        var errors = new List<string>();
        var run = ScaleProcess.StartWithErrors(line =>
        {
            lock (lines) lines.Add(line);
            if (line.StartsWith("trial ", StringComparison.Ordinal) && line.EndsWith("checkpoint at step 10", StringComparison.Ordinal))
                checkpointed.TrySetResult();
        }, line => { lock (errors) errors.Add(line); }, "run", file, "--data-dir", data, "--threads", "1", "--http", "off", "--plain");
        bool started = checkpointed.Task.Wait(TimeSpan.FromMinutes(4));
        lock (lines) Assert.True(started, string.Join("\n", lines));
        return (run, lines, errors);
    }

    private static SqliteConnection LockJournal(string data)
    {
        var connection = new SqliteConnection($"Data Source={Path.Combine(data, "sweeps.db")};Pooling=False");
        connection.Open();
        using var begin = connection.CreateCommand();
        begin.CommandText = "BEGIN EXCLUSIVE";
        begin.ExecuteNonQuery();
        return connection;
    }

    [Fact]
    public void A_journal_another_process_keeps_locked_ends_the_run_in_bounded_time_naming_the_journal_and_the_command_that_resumes_it()
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("long.hocon");
        string data = dir.Combine("data");
        var (run, lines, errors) = StartLongRun(dir, file, data);
        using var _ = run;

        // Another process takes the journal's write lock and keeps it until the run has ended (5 minutes at most): the
        // coordinator fails each write after the busy timeout and is restarted with backoff; the run waits two minutes.
        var clock = Stopwatch.StartNew();
        using (LockJournal(data))
        {
            bool ended = run.WaitForExit(TimeSpan.FromMinutes(5));
            lock (lines) Assert.True(ended, $"scale run was still there 5 minutes after its journal was locked:\n{string.Join("\n", lines.TakeLast(10))}");
        }
        run.WaitForExit();
        output.WriteLine($"the run ended {clock.Elapsed.TotalSeconds:0} s after the lock was taken");

        Assert.Equal(1, run.ExitCode);
        string said;
        lock (errors) said = string.Join("\n", errors);
        Assert.Contains("the sweep's journal " + Path.Combine(data, "sweeps.db") + " could not be written for ", said);
        Assert.Contains($"run `scale run {file} --data-dir {data}` to resume it", said);
        Assert.DoesNotContain("   at ", said);   // no stack trace
        var status = ScaleProcess.Run("status", "recover", "--data-dir", data);
        Assert.Equal(0, status.ExitCode);
        Assert.Contains("interrupted (resumes with `scale run`)", status.Stdout);
    }

    [Fact]
    public void A_journal_locked_for_longer_than_its_busy_timeout_and_then_released_costs_the_run_nothing()
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("long.hocon");
        string data = dir.Combine("data");
        var (run, lines, errors) = StartLongRun(dir, file, data);
        using var _ = run;

        // Held for 45 s, past the journal's timeouts: writes fail and the coordinator stops. Its supervisor starts it again,
        // the trainers send their reports again, and once the lock is gone the sweep goes on.
        using (LockJournal(data))
        {
            Assert.False(run.WaitForExit(TimeSpan.FromSeconds(45)), "the run ended while its journal was locked");   // the fault's length
            lock (errors) Assert.Contains(errors, e => e.Contains("Failed to persist event", StringComparison.Ordinal));
        }
        var checkpointsBefore = Count(data, "SELECT count(*) FROM journal WHERE persistence_id = 'sweep-recover'");
        var watch = Stopwatch.StartNew();
        while (Count(data, "SELECT count(*) FROM journal WHERE persistence_id = 'sweep-recover'") <= checkpointsBefore + 5 && watch.Elapsed < TimeSpan.FromMinutes(3))
        {
            Assert.False(run.HasExited, "the run ended after its journal was released");
            run.WaitForExit(TimeSpan.FromSeconds(1));
        }
        Assert.True(Count(data, "SELECT count(*) FROM journal WHERE persistence_id = 'sweep-recover'") > checkpointsBefore + 5, "no event was written after the lock was released");
        Assert.False(run.HasExited);
        SendSignal(run.Id, 2);
        Assert.True(run.WaitForExit(TimeSpan.FromMinutes(2)));
        Assert.Equal(130, run.ExitCode);
        string said;
        lock (errors) said = string.Join("\n", errors);
        Assert.DoesNotContain("could not be written for", said);
    }

    [Fact]
    public void A_damaged_snapshot_is_replayed_from_the_events_and_a_damaged_event_quarantines_the_sweep_with_one_line()
    {
        using var dir = new TempDirectory();
        var file = SweepFile(dir);
        string data = dir.Combine("data");
        var first = ScaleProcess.Run(Run(file, data));
        Assert.True(first.ExitCode == 0, first.Stderr + first.Stdout);
        var reference = Results(data);

        // Every snapshot damaged: the run recovers from the events (nothing to do: the sweep is finished) and says so.
        Assert.True(Count(data, "SELECT count(*) FROM snapshot") >= 1);
        Execute(data, "UPDATE snapshot SET snapshot = X'7B6E6F74206A736F6E'");
        var again = ScaleProcess.Run(Run(file, data));
        Assert.True(again.ExitCode == 0, again.Stderr + again.Stdout);
        Assert.Contains("snapshot at event", again.Stderr);
        SameAsReference(Results(data), reference);

        // One event damaged: the run stops with one line naming the sweep and the event; status reports it quarantined.
        Execute(data, "UPDATE journal SET message = X'7B6E6F74206A736F6E' WHERE persistence_id = 'sweep-recover' AND sequence_number = 5");
        var damaged = ScaleProcess.Run(Run(file, data));
        var status = ScaleProcess.Run("status", "--data-dir", data);

        Assert.Equal(1, damaged.ExitCode);
        var line = damaged.Stderr.Split('\n').Single(l => l.StartsWith("scale: ", StringComparison.Ordinal));
        Assert.Contains("sweep recover cannot be recovered: event 5 of its journal cannot be read", line);
        Assert.Equal(0, status.ExitCode);
        Assert.Contains("recover: quarantined, does not run", status.Stdout);
    }
}
