using System.Diagnostics;

namespace Scale.Tests.Deploy;

/// <summary>Runs a program of the machine's (Slurm's, Docker's, Prometheus's, systemd's commands) to its end.</summary>
internal static class ExternalCommand
{
    public sealed record Result(int ExitCode, string Output);

    /// <summary>
    /// Runs <paramref name="command"/> with <paramref name="environment"/> added and <paramref name="input"/> on its
    /// standard input; its stdout and stderr together. Killed after <paramref name="timeout"/> (default 15 minutes).
    /// </summary>
    public static Result Run(string command, IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null,
                             string? input = null, string? workingDirectory = null, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(command, arguments)
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? "",
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        if (input is not null) process.StandardInput.Write(input);
        process.StandardInput.Close();
        var error = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(timeout ?? TimeSpan.FromMinutes(15))) process.Kill(entireProcessTree: true);
        process.WaitForExit();
        return new Result(process.ExitCode, output + error.Result);
    }
}
