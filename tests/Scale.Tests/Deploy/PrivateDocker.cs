using System.Diagnostics;

namespace Scale.Tests.Deploy;

/// <summary>
/// A Docker engine of the test's own (Debian's docker.io): dockerd with its data, state and socket in a private
/// directory, no iptables, no bridge (containers use the host's network), so that nothing of a machine's own Docker is
/// touched. Every docker and docker-compose command of the test goes to it through DOCKER_HOST. Disposing stops it.
/// </summary>
internal sealed class PrivateDocker : IDisposable
{
    private readonly Process daemon;
    private readonly string log;
    private readonly string directory;

    /// <summary>Why a private Docker engine with compose and debootstrap cannot run here (null: it can).</summary>
    public static string? Missing()
    {
        if (!OperatingSystem.IsLinux()) return "Docker's engine runs on Linux only here";
        if (Environment.UserName != "root") return "dockerd and debootstrap need root, and the tests do not run as root";
        static bool Present() => File.Exists("/usr/sbin/dockerd") && File.Exists("/usr/bin/docker-compose") && File.Exists("/usr/sbin/debootstrap")
                                 && (File.Exists("/usr/bin/docker") || File.Exists("/usr/local/bin/docker"));
        return DebianPackages.Ensure(Present, "docker.io", "docker-compose", "debootstrap")
            ? null
            : "Docker is not installed (Debian's docker.io, docker-compose and debootstrap) and could not be installed";
    }

    public PrivateDocker(string directory)
    {
        this.directory = directory;
        Directory.CreateDirectory(directory);
        log = Path.Combine(directory, "dockerd.log");
        Host = $"unix://{directory}/docker.sock";
        var start = new ProcessStartInfo("/usr/sbin/dockerd",
            ["--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false",
             $"--data-root={directory}/root", $"--exec-root={directory}/exec", $"--host={Host}", $"--pidfile={directory}/docker.pid"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        daemon = Process.Start(start)!;
        daemon.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) File.AppendAllText(log, e.Data + "\n"); };
        daemon.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) File.AppendAllText(log, e.Data + "\n"); };
        daemon.BeginOutputReadLine();
        daemon.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        // Polled: dockerd says nothing a test could wait on but its socket answering.
        while (Run("docker", "version", "--format", "{{.Server.Version}}").ExitCode != 0)
        {
            if (daemon.HasExited || clock.Elapsed > TimeSpan.FromMinutes(2))
            {
                var why = Logs();
                Dispose();
                throw new InvalidOperationException("dockerd did not start:\n" + why);
            }
            Thread.Sleep(500);
        }
    }

    /// <summary>DOCKER_HOST for this engine.</summary>
    public string Host { get; }

    public ExternalCommand.Result Run(string command, params string[] arguments) => RunWith(new Dictionary<string, string>(), command, arguments);

    /// <summary>Runs a command (docker, docker-compose, a script) against this engine, with <paramref name="environment"/> added.</summary>
    public ExternalCommand.Result RunWith(IReadOnlyDictionary<string, string> environment, string command, params string[] arguments)
        => ExternalCommand.Run(command, arguments, new Dictionary<string, string>(environment) { ["DOCKER_HOST"] = Host });

    public string Logs() => File.Exists(log) ? string.Join("\n", File.ReadLines(log).TakeLast(30)) : "";

    /// <summary>Stops the engine (SIGTERM: it stops its containers and unmounts their file systems).</summary>
    public void Dispose()
    {
        if (!daemon.HasExited)
        {
            _ = SendSignal(daemon.Id, 15);
            if (!daemon.WaitForExit(TimeSpan.FromMinutes(1))) daemon.Kill(entireProcessTree: true);
        }
        daemon.WaitForExit();
        daemon.Dispose();
        // dockerd leaves its network namespace's bind mount behind; unmounted, the directory can be removed.
        foreach (var mount in File.ReadLines("/proc/self/mounts").Select(l => l.Split(' ')[1])
                     .Where(m => m.StartsWith(directory + "/", StringComparison.Ordinal)).OrderByDescending(m => m.Length))
            Run("umount", "-l", mount);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int SendSignal(int pid, int signal);
}
