namespace Scale.Actors.Sweeps;

/// <summary>
/// One process at a time works on a sweep: an exclusively opened lock file in the sweep's directory.
/// The operating system releases it when the process ends, however it ends (SIGKILL included).
/// </summary>
internal sealed class SweepLock : IDisposable
{
    private readonly FileStream stream;

    private SweepLock(FileStream stream) => this.stream = stream;

    public const string OwnerFile = "run.owner";

    /// <summary>
    /// Takes the sweep's run lock and records this process as its owner (<see cref="OwnerFile"/>), so that readers can
    /// tell a running sweep from an interrupted one without touching the lock (<see cref="IsHeld"/>).
    /// </summary>
    public static SweepLock Acquire(string sweepDirectory, string sweep)
    {
        var held = TryAcquire(sweepDirectory) ?? throw new ArgumentException(
            $"Sweep '{sweep}' is being run by another scale process (lock {Path.Combine(sweepDirectory, "run.lock")}); `scale status {sweep}` shows its progress.");
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        var owner = Path.Combine(sweepDirectory, OwnerFile);
        File.WriteAllText(owner + ".tmp", $"{Environment.ProcessId} {self.StartTime.ToUniversalTime().Ticks}");
        File.Move(owner + ".tmp", owner, overwrite: true);
        return held;
    }

    /// <summary>
    /// Whether a live process holds the sweep's run lock, judged from <see cref="OwnerFile"/> alone: the process it names
    /// still runs and started when it says. Never opens the lock file, so it cannot make a starting run fail.
    /// </summary>
    public static bool IsHeld(string sweepDirectory)
    {
        try
        {
            var parts = File.ReadAllText(Path.Combine(sweepDirectory, OwnerFile)).Split(' ');
            if (parts.Length != 2 || !int.TryParse(parts[0], out int pid) || !long.TryParse(parts[1], out long started)) return false;
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            // The start time is derived from the boot time, which each process computes anew: allow a second's difference.
            return !process.HasExited && Math.Abs(process.StartTime.ToUniversalTime().Ticks - started) < TimeSpan.TicksPerSecond;
        }
        catch (Exception e) when (e is IOException or ArgumentException or InvalidOperationException or UnauthorizedAccessException
                                       or System.ComponentModel.Win32Exception)
        {
            return false;   // no owner file (never run, or from before owners were recorded), or its process is gone
        }
    }

    /// <summary>The lock file <paramref name="name"/> in <paramref name="directory"/>, or null while another process holds it.</summary>
    public static SweepLock? TryAcquire(string directory, string name = "run.lock")
    {
        Directory.CreateDirectory(directory);
        try
        {
            return new SweepLock(new FileStream(Path.Combine(directory, name), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
        }
        catch (IOException)
        {
            return null;
        }
    }

    public void Dispose() => stream.Dispose();
}
