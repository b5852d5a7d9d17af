using System.Diagnostics;

namespace Scale.Tests.Host;

/// <summary>Runs the real `scale` command (the build output copied beside the tests) as a child process.</summary>
internal static class ScaleProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>Starts `scale` with every stdout line passed to <paramref name="onLine"/> as it comes.</summary>
    public static Process Start(Action<string> onLine, params string[] arguments) => StartWithErrors(onLine, _ => { }, arguments);

    /// <summary>As <see cref="Start"/>, with every stderr line passed to <paramref name="onError"/>.</summary>
    public static Process StartWithErrors(Action<string> onLine, Action<string> onError, params string[] arguments)
    {
        var start = Info(arguments);
        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) onLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) onError(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    public static Result Run(params string[] arguments) => RunWith(new Dictionary<string, string>(), arguments);

    /// <summary>As <see cref="Run"/>, with <paramref name="environment"/> added to the child's environment.</summary>
    public static Result RunWith(IReadOnlyDictionary<string, string> environment, params string[] arguments)
    {
        var start = Info(arguments);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"scale {string.Join(' ', arguments)} did not finish in 5 minutes.");
        }
        return new Result(process.ExitCode, stdout, stderr.Result);
    }

    /// <summary>
    /// Whether this process inherited SIGINT as ignored (a test run started from a background job of a non-interactive
    /// shell does): its children would inherit that too, and never see a Ctrl+C the tests send them.
    /// </summary>
    private static readonly bool InterruptIgnored = File.Exists("/proc/self/status") && File.ReadLines("/proc/self/status")
        .FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal)) is { } line
        && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << (2 - 1))) != 0;

    private static ProcessStartInfo Info(string[] arguments)
    {
        // With SIGINT inherited as ignored, start `scale` through perl (Debian's perl-base is essential), which restores
        // the default disposition and then becomes the command (same process, same id).
        var start = new ProcessStartInfo(InterruptIgnored ? "perl" : "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        if (InterruptIgnored)
            foreach (var argument in new[] { "-e", "$SIG{INT} = 'DEFAULT'; exec { $ARGV[0] } @ARGV or die \"exec: $!\"", "dotnet" })
                start.ArgumentList.Add(argument);
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "scale.dll"));
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        start.Environment["NO_COLOR"] = "1";
        start.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
        return start;
    }
}
