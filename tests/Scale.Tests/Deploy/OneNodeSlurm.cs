using System.Diagnostics;

namespace Scale.Tests.Deploy;

/// <summary>
/// A one-node Slurm cluster of this test's own on 127.0.0.1: munged, slurmctld and slurmd from Debian's packages, each
/// started in the foreground as a child of the test with its files in a private directory and its ports free ones, so
/// that nothing of the machine's own Slurm or munge (if any) is touched. Disposing cancels the cluster's jobs and stops
/// the three daemons.
/// </summary>
internal sealed class OneNodeSlurm : IDisposable
{
    private static readonly string[] Daemons = ["/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd"];
    private static readonly string[] Commands = ["sbatch", "scontrol", "squeue", "scancel", "sinfo"];
    private readonly List<Process> daemons = [];
    private readonly string dir;

    /// <summary>Why a one-node Slurm cannot run here (null: it can), after trying to install Debian's packages.</summary>
    public static string? Missing()
    {
        if (!OperatingSystem.IsLinux()) return "Slurm runs on Linux only";
        if (Environment.UserName != "root") return "slurmd must run as root to start jobs, and the tests do not run as root";
        static bool Present() => Daemons.All(File.Exists) && Commands.All(c => File.Exists($"/usr/bin/{c}"));
        return DebianPackages.Ensure(Present, "munge", "slurmctld", "slurmd", "slurm-client")
            ? null
            : "Slurm is not installed (Debian's munge, slurmctld, slurmd and slurm-client) and could not be installed";
    }

    public OneNodeSlurm(string directory, int cpus)
    {
        dir = directory;
        Directory.CreateDirectory(dir);
        // munged refuses a key or a socket directory that others can write.
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        foreach (var sub in new[] { "state", "spool", "log" }) Directory.CreateDirectory(Path.Combine(dir, sub));
        var key = Path.Combine(dir, "munge.key");
        File.WriteAllBytes(key, System.Security.Cryptography.RandomNumberGenerator.GetBytes(1024));
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Config = Path.Combine(dir, "slurm.conf");
        var host = Environment.MachineName;
        File.WriteAllText(Config, $"""
            ClusterName=scaletest
            SlurmctldHost={host}(127.0.0.1)
            SlurmctldPort={FreePorts.Next()}
            SlurmdPort={FreePorts.Next()}
            SlurmUser=root
            SlurmdUser=root
            AuthType=auth/munge
            AuthInfo=socket={dir}/munge.socket
            CredType=cred/munge
            SelectType=select/cons_tres
            SelectTypeParameters=CR_Core
            ProctrackType=proctrack/linuxproc
            TaskPlugin=task/none
            JobAcctGatherType=jobacct_gather/none
            AccountingStorageType=accounting_storage/none
            MpiDefault=none
            StateSaveLocation={dir}/state
            SlurmdSpoolDir={dir}/spool
            SlurmctldPidFile={dir}/slurmctld.pid
            SlurmdPidFile={dir}/slurmd.pid
            SlurmctldLogFile={dir}/log/slurmctld.log
            SlurmdLogFile={dir}/log/slurmd.log
            ReturnToService=2
            JobRequeue=1
            NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
            PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
            """);
        try
        {
            Start("munged", "-F", "-f", $"--socket={dir}/munge.socket", $"--key-file={key}", $"--log-file={dir}/log/munged.log",
                  $"--pid-file={dir}/munged.pid", $"--seed-file={dir}/munged.seed");
            WaitUntil(() => File.Exists(Path.Combine(dir, "munge.socket")), TimeSpan.FromSeconds(60), "munged's socket");
            Start("slurmctld", "-D", "-f", Config);
            Start("slurmd", "-D", "-f", Config);
            WaitUntil(() => Run("sinfo", "-h", "-o", "%T").Output.Trim() == "idle", TimeSpan.FromMinutes(2), "the node idle in sinfo");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The cluster's slurm.conf: SLURM_CONF for every Slurm command (and so for sbatch's job environment).</summary>
    public string Config { get; }

    /// <summary>Runs a Slurm command against this cluster (with <paramref name="environment"/> added).</summary>
    public ExternalCommand.Result Run(string command, params string[] arguments) => RunWith(new Dictionary<string, string>(), command, arguments);

    public ExternalCommand.Result RunWith(IReadOnlyDictionary<string, string> environment, string command, params string[] arguments)
        => ExternalCommand.Run(command, arguments, new Dictionary<string, string>(environment) { ["SLURM_CONF"] = Config }, timeout: TimeSpan.FromMinutes(2));

    /// <summary>A job's JobState (PENDING, RUNNING, COMPLETED, CANCELLED, …) and its ExitCode ("0:0").</summary>
    public (string State, string ExitCode) Job(string id)
    {
        var fields = Run("scontrol", "show", "job", "-o", id).Output.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(f => f.Split('=', 2)).Where(f => f.Length == 2).GroupBy(f => f[0]).ToDictionary(g => g.Key, g => g.First()[1]);
        return (fields.GetValueOrDefault("JobState", "UNKNOWN"), fields.GetValueOrDefault("ExitCode", ""));
    }

    /// <summary>Polls <paramref name="condition"/> every half second: the daemons and the job give no event to wait on.</summary>
    public static void WaitUntil(Func<bool> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > timeout) throw new TimeoutException($"Slurm: no {what} within {timeout.TotalSeconds:0} s.");
            Thread.Sleep(500);
        }
    }

    public string Logs() => string.Join("\n", Directory.EnumerateFiles(Path.Combine(dir, "log"))
        .Select(f => $"--- {Path.GetFileName(f)}\n{string.Join("\n", File.ReadLines(f).TakeLast(30))}"));

    private void Start(string name, params string[] arguments)
    {
        var start = new ProcessStartInfo(Daemons.Single(d => d.EndsWith("/" + name, StringComparison.Ordinal)), arguments)
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        start.Environment["SLURM_CONF"] = Config;
        var process = Process.Start(start)!;
        var log = Path.Combine(dir, "log", name + ".out");
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (daemons) File.AppendAllText(log, e.Data + "\n"); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (daemons) File.AppendAllText(log, e.Data + "\n"); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        daemons.Add(process);
    }

    /// <summary>Cancels this cluster's jobs (their processes get SIGTERM, then SIGKILL after KillWait), then stops the daemons.</summary>
    public void Dispose()
    {
        if (daemons.Count == 3)
        {
            Run("scancel", "--user", "root");
            try
            {
                WaitUntil(() => Run("squeue", "-h").Output.Trim().Length == 0, TimeSpan.FromMinutes(1), "job left");
            }
            catch (TimeoutException)
            {
                // the daemons are stopped anyway; slurmstepd ends its steps by itself
            }
        }
        foreach (var process in Enumerable.Reverse(daemons))
        {
            if (!process.HasExited) process.Kill();
            process.WaitForExit(TimeSpan.FromSeconds(30));
            process.Dispose();
        }
        daemons.Clear();
    }
}
