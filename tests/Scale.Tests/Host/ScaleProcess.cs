using System.Diagnostics;

namespace Scale.Tests.Host;

/// <summary>Runs the real `scale` command (the build output copied beside the tests) as a child process.</summary>
internal static class ScaleProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>Starts `scale` with every stdout line passed to <paramref name="onLine"/> as it comes.</summary>
    public static Process Start(Action<string> onLine, params string[] arguments)
    {
        var start = Info(arguments);
        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) onLine(e.Data); };
        process.ErrorDataReceived += (_, _) => { };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    public static Result Run(params string[] arguments)
    {
        var start = Info(arguments);
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

    private static ProcessStartInfo Info(string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "scale.dll"));
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        start.Environment["NO_COLOR"] = "1";
        start.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
        return start;
    }
}
