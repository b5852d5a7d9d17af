using System.Diagnostics;
using Npgsql;

namespace Scale.Tests.Persistence;

/// <summary>
/// A real PostgreSQL server for the tests: the one named by SCALE_TEST_POSTGRES (a connection string), or else a
/// private cluster started here from Debian's postgresql package (initdb into a temporary directory, a free port on
/// 127.0.0.1; run as the postgres user when the tests run as root, which initdb refuses), stopped and removed on
/// dispose. Without either, the tests that need it fail and say how to get PostgreSQL — they are never skipped.
/// </summary>
public sealed class PostgresServer : IDisposable
{
    private readonly Process? server;
    private readonly string? directory;
    private int databases;

    public PostgresServer()
    {
        if (Environment.GetEnvironmentVariable("SCALE_TEST_POSTGRES") is { Length: > 0 } given)
        {
            AdminConnectionString = given;
            return;
        }
        DebianPackages.Ensure(() => FindBinaries() is not null, "postgresql");
        var bin = FindBinaries() ?? throw new InvalidOperationException(
            "PostgreSQL is needed for these tests and could not be installed: install Debian's postgresql package (initdb and postgres), or set SCALE_TEST_POSTGRES to a connection string.");
        directory = Path.Combine(Path.GetTempPath(), $"scale-pg-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        bool root = Environment.UserName == "root";
        if (root) Run("chown", "-R", "postgres:postgres", directory);
        var data = Path.Combine(directory, "data");
        RunAs(root, Path.Combine(bin, "initdb"), "-D", data, "-A", "trust", "-U", "scale", "--no-sync", "-E", "UTF8");
        int port = FreePorts.Next();
        var start = Start(root, Path.Combine(bin, "postgres"), "-D", data, "-p", port.ToString(), "-k", directory,
                          "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off");
        // The server says on stderr when it accepts connections; wait for that line (or for it to exit), not for time.
        var accepting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        server = new Process { StartInfo = start, EnableRaisingEvents = true };
        server.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            log.Enqueue(e.Data);
            if (e.Data.Contains("ready to accept connections", StringComparison.Ordinal)) accepting.TrySetResult();
        };
        server.OutputDataReceived += (_, _) => { };
        server.Exited += (_, _) => accepting.TrySetException(new InvalidOperationException("PostgreSQL exited while starting:\n" + string.Join("\n", log)));
        server.Start();
        server.BeginOutputReadLine();
        server.BeginErrorReadLine();
        if (!accepting.Task.Wait(TimeSpan.FromMinutes(2)))
            throw new TimeoutException("PostgreSQL did not accept connections within 2 minutes:\n" + string.Join("\n", log));
        AdminConnectionString = $"Host=127.0.0.1;Port={port};Username=scale;Database=postgres;Pooling=false";
    }

    public string AdminConnectionString { get; }

    /// <summary>A fresh, empty database on the server; its connection string.</summary>
    public string NewDatabase()
    {
        var name = $"scale_test_{Environment.ProcessId}_{Interlocked.Increment(ref databases)}_{Guid.NewGuid():N}"[..40];
        using (var connection = new NpgsqlConnection(AdminConnectionString))
        {
            connection.Open();
            using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
            command.ExecuteNonQuery();
        }
        return new NpgsqlConnectionStringBuilder(AdminConnectionString) { Database = name, Pooling = false }.ConnectionString;
    }

    private static string? FindBinaries()
    {
        var root = "/usr/lib/postgresql";
        if (!Directory.Exists(root)) return null;
        return Directory.GetDirectories(root).Select(v => Path.Combine(v, "bin")).Where(b => File.Exists(Path.Combine(b, "initdb")))
            .OrderByDescending(b => b, StringComparer.Ordinal).FirstOrDefault();
    }

    private static ProcessStartInfo Start(bool asPostgres, string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(asPostgres ? "runuser" : program)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        if (asPostgres) foreach (var a in new[] { "-u", "postgres", "--", program }) start.ArgumentList.Add(a);
        foreach (var a in arguments) start.ArgumentList.Add(a);
        return start;
    }

    private static void RunAs(bool asPostgres, string program, params string[] arguments)
    {
        using var process = Process.Start(Start(asPostgres, program, arguments))!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{program} failed ({process.ExitCode}): {error}{output.Result}");
    }

    private static void Run(string program, params string[] arguments) => RunAs(false, program, arguments);

    public void Dispose()
    {
        if (server is { HasExited: false })
        {
            server.Kill(entireProcessTree: true);
            server.WaitForExit();
        }
        server?.Dispose();
        if (directory is not null && Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }
}
