using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using Scale.Tests.Host;
using Scale.Tests.Model;
using Xunit.Abstractions;

namespace Scale.Tests.Deploy;

/// <summary>
/// deploy/slurm/scale.sbatch on a real one-node Slurm (munged, slurmctld and slurmd of the test's own on 127.0.0.1), with
/// the cluster's remoting over mutual TLS from deploy/tls/make-certs.sh: a sweep submitted with sbatch is cancelled
/// with scancel mid-trial, submitted again, requeued mid-trial, and still completes every trial exactly once.
/// </summary>
public sealed class SlurmTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(10);

    [SkippableFact]
    [Trait("Category", "Deploy")]
    public void A_sweep_run_by_sbatch_survives_a_scancel_and_a_requeue_and_completes_every_trial_once()
    {
        var missing = OneNodeSlurm.Missing();
        Skip.If(missing is not null, $"Slurm test skipped: {missing}.");
        using var dir = new TempDirectory();
        using var slurm = new OneNodeSlurm(dir.Combine("slurm"), Environment.ProcessorCount);
        var certificates = Repository.File("deploy", "tls", "make-certs.sh");
        var made = slurm.Run(certificates, dir.Combine("tls"), "127.0.0.1", "localhost");
        Assert.True(made.ExitCode == 0, made.Output);

        // Long enough trials (600 steps) that each interruption lands mid-trial, with no periodic checkpoint before step 599:
        // a checkpoint before it is one a draining worker wrote on its way out.
        var sweep = dir.Combine("slurmed.hocon");
        File.WriteAllText(sweep, SweepProcessTestsSweep.Tiny.Replace("name = recover", "name = slurmed").Replace("steps = 60", "steps = 600")
            .Replace("checkpoint-every = 5", "checkpoint-every = 599"));
        string data = dir.Combine("data"), log = dir.Combine("job.out");
        // The sweep's events of one kind in the seed's SQLite journal (in the shared data directory), as JSON.
        List<System.Text.Json.JsonElement> Events(string manifest)
        {
            using var connection = new SqliteConnection($"Data Source={Path.Combine(data, "sweeps.db")};Pooling=False");
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT CAST(message AS TEXT) FROM journal WHERE persistence_id = 'sweep-slurmed' AND manifest = $manifest";
            command.Parameters.AddWithValue("$manifest", manifest);
            var events = new List<System.Text.Json.JsonElement>();
            using var reader = command.ExecuteReader();
            while (reader.Read()) events.Add(System.Text.Json.JsonDocument.Parse(reader.GetString(0)).RootElement.Clone());
            return events;
        }
        // The steps of the checkpoints the journal holds that were written on a drain.
        List<long> DrainCheckpoints() => Events("trial-checkpointed.v1").Select(e => e.GetProperty("step").GetInt64()).Where(s => s is > 0 and < 599).ToList();
        var environment = new Dictionary<string, string>
        {
            ["SCALE"] = $"dotnet {Path.Combine(AppContext.BaseDirectory, "scale.dll")}",
            ["SCALE_DATA_DIR"] = data,
            ["SCALE_TLS_DIR"] = dir.Combine("tls"),
            ["SCALE_PORT"] = FreePorts.Next().ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["SCALE_HTTP"] = "off",
            ["OMP_WAIT_POLICY"] = "PASSIVE",
            ["NO_COLOR"] = "1",
        };
        string Submit()
        {
            var submitted = slurm.RunWith(environment, "sbatch", "--parsable", "--output", log, "--cpus-per-task", Environment.ProcessorCount.ToString(System.Globalization.CultureInfo.InvariantCulture),
                                          Repository.File("deploy", "slurm", "scale.sbatch"), sweep);
            Assert.True(submitted.ExitCode == 0, submitted.Output);
            return submitted.Output.Trim();
        }
        string Log() => File.Exists(log) ? File.ReadAllText(log) : "";
        // A trained trial's progress line printed after the log had `from` characters: the run is mid-trial.
        void MidTrial(int from, string what) => OneNodeSlurm.WaitUntil(
            () => Log() is var text && text.Length > from && Regex.IsMatch(text[from..], @"^trial (preserve|route|full)-\S+ step \d+/600 ", RegexOptions.Multiline),
            Patience, what);
        // Ended: in its final state, and out of squeue (no process of it still completing).
        void Ended(string job, string state) => OneNodeSlurm.WaitUntil(
            () => slurm.Job(job).State == state && slurm.Run("squeue", "-h", "-j", job).Output.Trim().Length == 0, Patience, $"job {job} {state}");

        try
        {
            // 1. scancel mid-trial: every process gets SIGTERM; the worker drains and leaves, the seed stops.
            var first = Submit();
            MidTrial(0, "trial training in the first job");
            var cancelledAt = Log().Length;
            Assert.Equal(0, slurm.Run("scancel", first).ExitCode);
            Ended(first, "CANCELLED");
            var afterCancel = Log()[cancelledAt..];
            Assert.Contains("scale.sbatch: stopping (SIGTERM", afterCancel);
            Assert.Contains("Leaving the cluster; running trials continue elsewhere", afterCancel);   // the worker drained, not killed
            // The running trial's steps were checkpointed on the way out, and the journal has it (the last seed waited for the worker).
            Assert.Single(DrainCheckpoints());

            // 2. The same sweep submitted again resumes from the journal; requeued mid-trial, the job runs a third time and ends.
            var resubmittedAt = Log().Length;
            var second = Submit();
            OneNodeSlurm.WaitUntil(() => Log()[resubmittedAt..].Contains("Sweep slurmed is already on the cluster; following it."), Patience, "the resubmitted sweep resumed");
            MidTrial(resubmittedAt, "trial training in the second job");
            var requeuedAt = Log().Length;
            Assert.Equal(0, slurm.Run("scontrol", "requeue", second).ExitCode);
            // A requeued job waits (BeginTime) before it may start again; the operator's way to start it now:
            OneNodeSlurm.WaitUntil(() => slurm.Job(second).State == "PENDING", Patience, "the requeued job pending");
            Assert.Equal(0, slurm.Run("scontrol", "update", $"jobid={second}", "starttime=now").ExitCode);
            Ended(second, "COMPLETED");
            Assert.Equal("0:0", slurm.Job(second).ExitCode);
            var afterRequeue = Log()[requeuedAt..];
            Assert.Contains($"scale.sbatch: job {second} (run 1)", afterRequeue);
            Assert.Equal(2, DrainCheckpoints().Count);
            Assert.Contains("Sweep slurmed: 4 trials: 4 completed, 0 running, 0 pending, 0 failed.", afterRequeue);
        }
        catch
        {
            output.WriteLine(Log());
            output.WriteLine(slurm.Logs());
            throw;
        }

        // Every trial completed exactly once in the journal.
        var completions = Events("trial-completed.v2").Select(e => e.GetProperty("trial_id").GetString()).ToList();
        Assert.Equal(4, completions.Count);
        Assert.Equal(4, completions.Distinct().Count());
    }
}
