namespace Scale.Host.Sweeps;

/// <summary>
/// One process at a time works on a sweep: an exclusively opened lock file in the sweep's directory.
/// The operating system releases it when the process ends, however it ends (SIGKILL included).
/// </summary>
internal sealed class SweepLock : IDisposable
{
    private readonly FileStream stream;

    private SweepLock(FileStream stream) => this.stream = stream;

    public static SweepLock Acquire(string sweepDirectory, string sweep)
        => TryAcquire(sweepDirectory) ?? throw new ArgumentException(
            $"Sweep '{sweep}' is being run by another scale process (lock {Path.Combine(sweepDirectory, "run.lock")}); `scale status {sweep}` shows its progress.");

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
