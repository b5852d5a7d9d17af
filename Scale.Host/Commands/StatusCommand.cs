using Scale.Actors.Trainers;
using System.ComponentModel;
using Scale.Actors.Sweeps;
using Scale.Actors.Persistence;
using Scale.Actors.Reports;
using Scale.Host.Sweeps;
using Scale.Model.Experiments;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>`scale status [SWEEP]`: every sweep in the data directory, or one sweep's trials, from the journal.</summary>
internal sealed class StatusCommand : AsyncCommand<StatusCommand.Settings>
{
    public sealed class Settings : ClusterClientSettings
    {
        [CommandArgument(0, "[SWEEP]"), Description("A sweep's name; without it, every sweep in the data directory.")]
        public string? Sweep { get; init; }

        [CommandOption("--data-dir <DIR>"), Description("Where the sweeps' journal lives (default ./scale-data)."), DefaultValue("scale-data")]
        public string DataDir { get; init; } = "scale-data";

        [CommandOption("--cluster <SEEDS>"), Description("Ask a running cluster through these seeds (host:port, comma-separated) instead of the data directory's journal.")]
        public string? Cluster { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        if (settings.Cluster is { } seeds) return await Cluster.ClusterRun.Status(settings.Sweep, Cluster.ClusterRun.Seeds(seeds), settings.ClientHost, settings.Tls(), cancellation);
        var names = settings.Sweep is { } one ? [one] : SweepPaths.KnownSweeps(settings.DataDir);
        if (names.Count == 0)
        {
            Console.WriteLine($"No sweeps in {settings.DataDir}. Start one with: scale run quickstart --data-dir {settings.DataDir}");
            return 0;
        }
        // A running sweep is read from its own process (its endpoint serves the state it keeps from its events): no actor
        // system starts here, which is what makes polling cheap. Any other sweep is read from the journal.
        var active = names.ToDictionary(n => n, n => IsActive(settings.DataDir, n));
        var rows = new Dictionary<string, IReadOnlyList<TrialRow>>();
        foreach (var name in names.Where(n => active[n]))
            if (await LiveRows(SweepPaths.SweepDirectory(settings.DataDir, name), name) is { } live) rows[name] = live;
        var fromJournal = names.Where(n => !rows.ContainsKey(n)).ToList();
        var quarantined = new Dictionary<string, string>();
        if (fromJournal.Count > 0)
            foreach (var state in await SweepJournal.ReadAll(settings.DataDir, fromJournal, quarantined))
                rows[state.SweepId!] = SweepReport.Rows(state);
        foreach (var name in names)
        {
            if (quarantined.TryGetValue(name, out var why))
            {
                Console.WriteLine($"{name}: quarantined, does not run: {why}");
                continue;
            }
            var trials = rows[name].Where(r => r.From is null).ToList();
            bool finished = trials.All(r => r.State is "completed" or "failed" or "stopped");
            Console.WriteLine($"{name}: {SweepReport.Counts(trials)}; {(finished ? "finished" : active[name] ? "running now" : "interrupted (resumes with `scale run`)")}");
            if (settings.Sweep is null) continue;
            if (active[name]) await ShowLive(SweepPaths.SweepDirectory(settings.DataDir, name));
            foreach (var t in trials)
                Console.WriteLine($"  {t.Trial,-22} {t.Method,-9} {(t.State == "running" && !active[name] ? "interrupted" : t.State),-11} " +
                                  $"attempt {t.Attempts}" + (t.LastCheckpointStep is { } step ? $", checkpoint at step {step}" : "") +
                                  (t.State is "failed" or "paused" ? $", {t.Failure}" : "") +
                                  (t.StoppedAt is { } stoppedAt ? $", stopped by the scheduler at step {stoppedAt}" : ""));
        }
        return 0;
    }

    /// <summary>A running sweep's trials from its process's endpoint, or null (no endpoint, or it does not answer).</summary>
    private static async Task<IReadOnlyList<TrialRow>?> LiveRows(string sweepDirectory, string sweep)
    {
        var file = Path.Combine(sweepDirectory, OperatorEndpoint.AddressFile);
        if (!File.Exists(file)) return null;
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri(File.ReadAllText(file).Trim()), Timeout = TimeSpan.FromSeconds(10) };
            // Read as the endpoint writes it (a standard error of one item is NaN).
            return System.Text.Json.JsonSerializer.Deserialize<List<TrialRow>>(await http.GetStringAsync($"/api/sweeps/{Uri.EscapeDataString(sweep)}/trials"),
                                                                             SweepReport.JsonOptions);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException or UriFormatException or IOException)
        {
            return null;   // the journal answers instead
        }
    }

    /// <summary>Members and trainers with their current trials, from the endpoint of the process running the sweep.</summary>
    private static async Task ShowLive(string sweepDirectory)
    {
        var file = Path.Combine(sweepDirectory, OperatorEndpoint.AddressFile);
        if (!File.Exists(file))
        {
            Console.WriteLine("  (the running process has no operators' endpoint: started with --http off)");
            return;
        }
        using var http = new HttpClient { BaseAddress = new Uri(File.ReadAllText(file).Trim()), Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            using var cluster = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync("/api/cluster"));
            using var trainers = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync("/api/trainers"));
            foreach (var member in cluster.RootElement.GetProperty("members").EnumerateArray())
                Console.WriteLine($"  member {member.GetProperty("address").GetString()} [{string.Join(", ", member.GetProperty("roles").EnumerateArray().Select(r => r.GetString()))}] {member.GetProperty("status").GetString()}");
            var unreachable = cluster.RootElement.GetProperty("unreachable").GetArrayLength();
            Console.WriteLine($"  unreachable members: {unreachable}");
            foreach (var trainer in trainers.RootElement.EnumerateArray())
            {
                var trials = trainer.GetProperty("trials").EnumerateArray().ToList();
                Console.WriteLine($"  trainer {trainer.GetProperty("trainer").GetString()} ({trainer.GetProperty("device").GetString()}): " +
                    (trials.Count == 0 ? "idle" : string.Join("; ", trials.Select(t =>
                        $"{t.GetProperty("trial").GetString()} step {t.GetProperty("step").GetInt64()}/{t.GetProperty("total_steps").GetInt64()}, " +
                        $"loss {t.GetProperty("loss").GetDouble():0.000}, {t.GetProperty("tokens_per_second").GetDouble():N0} tok/s"))));
            }
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException)
        {
            Console.WriteLine($"  (the running process's endpoint {http.BaseAddress} does not answer: {e.Message})");
        }
    }

    private static bool IsActive(string dataDirectory, string name) => SweepLock.IsHeld(SweepPaths.SweepDirectory(dataDirectory, name));
}

/// <summary>`scale results SWEEP`: every trial with its settings, state and scores, as a table, CSV or JSON.</summary>
internal sealed class ResultsCommand : AsyncCommand<ResultsCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<SWEEP>"), Description("The sweep's name.")]
        public string Sweep { get; init; } = "";

        [CommandOption("--format <FORMAT>"), Description("table (default), csv or json."), DefaultValue("table")]
        public string Format { get; init; } = "table";

        [CommandOption("--data-dir <DIR>"), Description("Where the sweeps' journal lives (default ./scale-data)."), DefaultValue("scale-data")]
        public string DataDir { get; init; } = "scale-data";

        [CommandOption("--best"), Description("Only the selected trial: the highest acquisition among trials with forgetting ≤ --max-forgetting; if none, the highest acquisition − forgetting.")]
        public bool Best { get; init; }

        [CommandOption("--max-forgetting <X>"), Description("The forgetting bound of --best (default 0.05) and --trade-off (default 0.02): recall's drop, or perplexity's rise as a share of the base's.")]
        public double? MaxForgetting { get; init; }

        [CommandOption("--trade-off"), Description("Each method at its best trade-off: the most acquisition within the forgetting bound over every rate and scored step, or, where none is within it, its front and the point of least forgetting with half its best acquisition.")]
        public bool TradeOff { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        if (settings.TradeOff)
        {
            var swept = await SweepJournal.Read(settings.DataDir, settings.Sweep);
            foreach (var choice in SweepReport.TradeOffs(swept, settings.MaxForgetting ?? 0.02))
            {
                static string At(TradeOffPoint p) => $"{p.Trial} {(p.Step is { } s ? $"at step {s}" : "final")}: retention {p.Retention:0.000}, acquisition {p.Acquisition:0.000}, forgetting {p.Forgetting:0.000}";
                Console.WriteLine($"{choice.Group}: {At(choice.Chosen)} ({choice.Rule})");
                foreach (var point in choice.Front) Console.WriteLine($"    front: {At(point)}");
            }
            return 0;
        }
        if (settings.Best)
        {
            var swept = await SweepJournal.Read(settings.DataDir, settings.Sweep);
            var (best, rule) = SweepReport.Best(swept, settings.MaxForgetting ?? 0.05);
            if (best is null) throw new ArgumentException($"Sweep '{settings.Sweep}' has no completed trials yet.");
            Console.WriteLine($"{best.Trial} {best.Method} {SweepReport.Params(best.Params)}: retention {best.Retention:0.000}, acquisition {best.Acquisition:0.000}, forgetting {best.Forgetting:0.000} ({rule})");
            return 0;
        }
        if (!SweepReport.Formats.Contains(settings.Format))
            throw new ArgumentException($"--format must be one of {string.Join(", ", SweepReport.Formats)}, got '{settings.Format}'.");
        var state = await SweepJournal.Read(settings.DataDir, settings.Sweep);
        switch (settings.Format)
        {
            case "json": Console.WriteLine(SweepReport.Json(state)); break;
            case "csv": Console.Write(SweepReport.Csv(state)); break;
            default:
                AnsiConsole.Write(SweepReport.Table(state));
                Console.WriteLine(SweepReport.Counts(state));
                break;
        }
        return 0;
    }
}
