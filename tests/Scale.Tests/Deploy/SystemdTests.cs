using System.Text.RegularExpressions;
using Scale.Tests.Host;
using Scale.Tests.Model;

namespace Scale.Tests.Deploy;

/// <summary>
/// deploy/systemd's units pass `systemd-analyze verify` (with the built `scale` in place of /opt/scale/scale, which the
/// verifier wants to exist), restart on failure, drain on SIGTERM, take their secrets as credentials, and name only
/// options their `scale` command has.
/// </summary>
public sealed partial class SystemdTests
{
    [GeneratedRegex(@"^ExecStart=(?<command>(?:.*\\\n)*.*)$", RegexOptions.Multiline)]
    private static partial Regex ExecStart();

    private static ExternalCommand.Result Verify(string unit) => ExternalCommand.Run("systemd-analyze", ["verify", unit]);

    [SkippableTheory]
    [Trait("Category", "Deploy")]
    [InlineData("scale-seed.service", "seed")]
    [InlineData("scale-worker.service", "worker")]
    public void A_unit_verifies_restarts_on_failure_drains_on_sigterm_and_keeps_its_secrets_off_the_command_line(string name, string role)
    {
        Skip.IfNot(DebianPackages.Ensure(() => File.Exists("/usr/bin/systemd-analyze"), "systemd"),
                   "systemd test skipped: systemd-analyze is not installed (Debian's systemd) and could not be installed.");
        using var dir = new TempDirectory();
        var text = File.ReadAllText(Repository.File("deploy", "systemd", name));
        var unit = dir.Combine(name);
        File.WriteAllText(unit, text.Replace("/opt/scale/scale", Path.Combine(AppContext.BaseDirectory, "scale")));
        // The verifier exits 0 on a directive it cannot parse (it ignores it with a line), so its output must be empty too.
        var verified = Verify(unit);
        Assert.True(verified.ExitCode == 0 && verified.Output.Trim().Length == 0, verified.Output);
        File.WriteAllText(dir.Combine("broken-" + name), File.ReadAllText(unit).Replace("Restart=on-failure", "Restart=sometimes"));
        Assert.Contains("Failed to parse service restart specifier", Verify(dir.Combine("broken-" + name)).Output);

        Assert.Contains("\nRestart=on-failure\n", text);
        Assert.Contains("\nKillSignal=SIGTERM\n", text);
        var command = ExecStart().Match(text).Groups["command"].Value.Replace("\\\n", " ");
        Assert.StartsWith($"/opt/scale/scale {role} ", command);
        // Secrets come from systemd's credentials (%d), never as values on the command line.
        foreach (var secret in new[] { "--journal ", "--tls-password ", "--http-token " })
            Assert.DoesNotContain(secret, command);
        Assert.Contains("--http-token-file %d/http-token", command);
        Assert.Contains("--tls-password-file %d/tls-password", command);
        // Every option it gives is one `scale seed` / `scale worker` has.
        var help = ScaleProcess.Run(role, "--help");
        foreach (Match option in Regex.Matches(command, @"(?<= )--[a-z-]+"))
            Assert.True(help.Stdout.Contains(option.Value + " ", StringComparison.Ordinal), $"scale {role} has no option {option.Value}:\n{help.Stdout}");
    }
}
