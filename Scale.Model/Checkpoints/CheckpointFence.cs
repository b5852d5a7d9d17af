using System.Globalization;
using System.Runtime.InteropServices;

namespace Scale.Model.Checkpoints;

/// <summary>A checkpoint was not written because a later attempt of the same trial owns its directory now.</summary>
internal sealed class CheckpointFencedException(string trialDirectory, int attempt, int owner)
    : Exception($"{trialDirectory}: attempt {attempt} is superseded by attempt {owner}; its checkpoint was not written.")
{
    public int Attempt { get; } = attempt;
    public int Owner { get; } = owner;
}

/// <summary>
/// Fences a trial's checkpoints by attempt. Two attempts of one trial can run at once on a cluster (a node taken for
/// dead keeps training while its replacement starts); both write into the trial's one directory on shared storage.
/// An attempt claims the directory when it starts (the fence file records the highest attempt that has), and each
/// checkpoint is published under the directory's lock only while the fence still names it: a superseded attempt's
/// checkpoint is refused with <see cref="CheckpointFencedException"/> and never replaces the current attempt's.
/// The lock is an exclusively opened file (flock on Linux), released by the operating system however a process ends.
/// Every claim and every publication is appended to <see cref="RecordFile"/> under that lock, so its lines are in the order
/// the directory saw them (a post-mortem of overlapping attempts reads it; log lines are stamped when written, which for a
/// process frozen between publishing and logging is later).
/// </summary>
internal sealed class CheckpointFence(string trialDirectory, int attempt)
{
    public const string FenceFile = "attempt.fence";
    public const string RecordFile = "fence.log";
    private const string LockFile = "checkpoint.lock";

    public string TrialDirectory { get; } = trialDirectory;
    public int Attempt { get; } = attempt;

    /// <summary>
    /// Records this attempt as the trial's owner, unless a later one already is (then <see cref="CheckpointFencedException"/>),
    /// and removes what earlier attempts left half-written.
    /// </summary>
    public void Claim() => Locked(() =>
    {
        int owner = Owner();
        if (owner > Attempt) throw new CheckpointFencedException(TrialDirectory, Attempt, owner);
        if (owner < Attempt) Durable.WriteAllText(Path.Combine(TrialDirectory, FenceFile), Attempt.ToString(CultureInfo.InvariantCulture));
        Record($"claimed by attempt {Attempt}");
        foreach (var staging in Directory.EnumerateDirectories(TrialDirectory, "*" + StagingMarker + "*").ToList())
        {
            if (StagingAttempt(staging) is not { } other || other >= Attempt) continue;
            try
            {
                Directory.Delete(staging, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The earlier attempt is still writing into it (a node taken for lost that still trains): it can never be
                // published now, and it is removed by that attempt itself or by a later claim. This attempt goes on.
            }
        }
    });

    /// <summary>Runs <paramref name="publish"/> (renames into place) under the lock, if this attempt still owns the trial;
    /// <paramref name="what"/> names what it published in the record.</summary>
    public void Publish(Action publish, string what) => Locked(() =>
    {
        int owner = Owner();
        if (owner > Attempt) throw new CheckpointFencedException(TrialDirectory, Attempt, owner);
        publish();
        Record($"{what} published by attempt {Attempt}");
    });

    /// <summary>The record's lines, oldest first ("claimed by attempt N", "WHAT published by attempt N", each after a time).</summary>
    public static IReadOnlyList<string> ReadRecord(string trialDirectory)
    {
        var path = Path.Combine(trialDirectory, RecordFile);
        return File.Exists(path) ? File.ReadAllLines(path) : [];
    }

    /// <summary>Appends a line to the record; called under the lock only.</summary>
    private void Record(string what)
        => File.AppendAllText(Path.Combine(TrialDirectory, RecordFile), $"{DateTimeOffset.UtcNow:O} {what}\n");

    /// <summary>The attempt that owns the trial now, if it is later than this one; null while this one may still publish.</summary>
    public int? SupersededBy() => Owner() is var owner && owner > Attempt ? owner : null;

    /// <summary>Where an attempt stages a checkpoint before publishing it: beside its target, named by the attempt and unique.</summary>
    public static string StagingFor(string target, int attempt)
        => $"{target}{StagingMarker}{attempt.ToString(CultureInfo.InvariantCulture)}-{Guid.NewGuid():N}";

    private const string StagingMarker = ".partial-a";

    private static int? StagingAttempt(string path)
    {
        var name = Path.GetFileName(path);
        int at = name.LastIndexOf(StagingMarker, StringComparison.Ordinal);
        if (at < 0) return null;
        var rest = name[(at + StagingMarker.Length)..];
        int dash = rest.IndexOf('-');
        return dash > 0 && int.TryParse(rest[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out int a) ? a : null;
    }

    private int Owner()
    {
        var path = Path.Combine(TrialDirectory, FenceFile);
        if (!File.Exists(path)) return 0;
        return int.TryParse(File.ReadAllText(path).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int owner) ? owner : 0;
    }

    private void Locked(Action action)
    {
        Directory.CreateDirectory(TrialDirectory);
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(5);
        while (true)
        {
            FileStream? held = null;
            try
            {
                held = new FileStream(Path.Combine(TrialDirectory, LockFile), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);   // another attempt is publishing: renames take milliseconds
                continue;
            }
            using (held)
            {
                action();
                return;
            }
        }
    }
}

/// <summary>
/// Writes that survive a power cut once they return: the data is flushed to the disk (fsync) before a file is renamed into
/// place, and the directory holding the new name is flushed after the rename.
/// </summary>
internal static class Durable
{
    /// <summary>Flushes a written file's data to the disk.</summary>
    public static void SyncFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Flushes a directory's entries (the names created, renamed or removed in it) to the disk. Linux only; elsewhere nothing.</summary>
    public static void SyncDirectory(string path)
    {
        if (!OperatingSystem.IsLinux()) return;
        int fd = Open(path, ReadOnly | DirectoryOnly);
        if (fd < 0) throw new IOException($"{path}: cannot open the directory to flush it (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (Fsync(fd) != 0) throw new IOException($"{path}: flushing the directory failed (errno {Marshal.GetLastPInvokeError()}).");
        }
        finally
        {
            Close(fd);
        }
    }

    /// <summary>Writes a small text file atomically and durably: a unique temp file, flushed, renamed over the target, the directory flushed.</summary>
    public static void WriteAllText(string path, string text)
    {
        var temp = $"{path}.{Guid.NewGuid():N}.tmp";
        try
        {
            File.WriteAllText(temp, text);
            SyncFile(temp);
            File.Move(temp, path, overwrite: true);
            SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    private const int ReadOnly = 0;
    private const int DirectoryOnly = 0x10000;   // O_DIRECTORY on Linux

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static extern int Fsync(int fd);

    [DllImport("libc", EntryPoint = "close")]
    private static extern int Close(int fd);
}
