using System.Diagnostics;

namespace Scale.Tests;

/// <summary>
/// The real parts some tests use come from Debian's packages (PostgreSQL, Chromium with chromedriver). `.ci/run`
/// installs them; so that the README's test command also works on a fresh machine with only the .NET SDK, a test
/// that finds its package missing installs it here (as root, or through passwordless sudo), once per run.
/// </summary>
internal static class DebianPackages
{
    private static readonly Lock Gate = new();
    private static readonly HashSet<string> Tried = [];

    /// <summary>Makes sure <paramref name="present"/> holds, installing <paramref name="packages"/> if it does not; returns whether it holds.</summary>
    public static bool Ensure(Func<bool> present, params string[] packages)
    {
        if (present()) return true;
        lock (Gate)
        {
            if (present()) return true;
            if (!Tried.Add(string.Join(" ", packages))) return false;
            bool root = Environment.UserName == "root";
            string Command(string arguments) => root ? arguments : "sudo -n " + arguments;
            foreach (var step in new[] { "apt-get update -q", $"apt-get install -y -q -o DPkg::Lock::Timeout=300 {string.Join(' ', packages)}" })
            {
                var start = new ProcessStartInfo("bash", ["-c", Command(step)]) { RedirectStandardOutput = true, RedirectStandardError = true };
                start.Environment["DEBIAN_FRONTEND"] = "noninteractive";
                using var process = Process.Start(start)!;
                process.StandardOutput.ReadToEndAsync();
                process.StandardError.ReadToEnd();
                process.WaitForExit();
                if (process.ExitCode != 0) break;
            }
            return present();
        }
    }
}
