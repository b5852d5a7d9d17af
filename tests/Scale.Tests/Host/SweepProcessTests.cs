using System.Diagnostics;
using System.Text.Json;
using Scale.Actors.Reports;
using Scale.Actors.Persistence;
using Scale.Host.Sweeps;
using Scale.Actors.Sweeps;
using Scale.Tests.Model;

namespace Scale.Tests.Host;

/// <summary>`scale run`, `scale status` and `scale results` as real processes on a tiny sweep, SIGKILL included.</summary>
/// <summary>The tiny sweep the process tests run.</summary>
internal static class SweepProcessTestsSweep
{
    public static string Tiny => SweepProcessTests.TinySweepText;
}

public class SweepProcessTests
{
    internal static string TinySweepText => TinySweep;

    private const string TinySweep = """
        sweep {
          name = recover
          experiment {
            name = tiny
            seed = 3
            vocab-size = 300
            model {
              hidden-size = 32
              layers = 2
              heads = 2
              ffn = 64
            }
            old {
              people = 4
              renderings = 6
            }
            new {
              people = 4
              renderings = 6
            }
            pretrain {
              steps = 30
              batch = 8
              sequence-length = 32
              warmup = 2
              evaluate-every = 10
            }
            continual {
              steps = 60
              batch = 8
              sequence-length = 32
              warmup = 2
            }
          }
          methods = [frozen, preserve, route, full]
          max-concurrent = 1
          checkpoint-every = 5
        }
        """;

    [Fact]
    public void Scale_experiment_and_a_one_trial_sweep_with_the_same_settings_give_bit_identical_scores_and_final_loss()
    {
        using var dir = new TempDirectory();
        var start = TinySweep.IndexOf("experiment {", StringComparison.Ordinal);
        var block = TinySweep[start..TinySweep.IndexOf("\n  methods = [", StringComparison.Ordinal)];
        File.WriteAllText(dir.Combine("tiny.hocon"), block.Replace("experiment {", "experiment {\n  methods = [adapt]\n  scale { heads-up = 2 }", StringComparison.Ordinal));
        File.WriteAllText(dir.Combine("one.hocon"), """
            sweep {
              name = one
              experiment = "tiny.hocon"
              search { adapt { methods = [adapt], fixed { w12_layers = "1" } } }
              checkpoint-every = 7
            }
            """);

        var sweep = ScaleProcess.Run("run", dir.Combine("one.hocon"), "--data-dir", dir.Combine("d"), "--threads", "1", "--http", "off", "--plain");
        var results = ScaleProcess.Run("results", "one", "--data-dir", dir.Combine("d"), "--format", "json");
        Assert.True(sweep.ExitCode == 0, sweep.Stderr);
        var trial = Assert.Single(JsonDocument.Parse(results.Stdout).RootElement.EnumerateArray().ToArray());
        // The experiment runs the same method with the trial's setting given experiment-wide: the planner applies both the same way.
        var plain = ScaleProcess.Run("experiment", dir.Combine("tiny.hocon"), "--data-dir", dir.Combine("d"), "--threads", "1", "--json");
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        var method = Assert.Single(JsonDocument.Parse(plain.Stdout).RootElement.GetProperty("methods").EnumerateArray().ToArray());

        // Not the same settings: the sweep trains W12 in layer 1 only, the experiment in every layer; so they must differ.
        Assert.NotEqual(trial.GetProperty("final_loss").GetDouble(), method.GetProperty("final_loss").GetDouble());

        File.WriteAllText(dir.Combine("all.hocon"), """
            sweep {
              name = all
              experiment = "tiny.hocon"
              methods = [adapt]
              checkpoint-every = 7
            }
            """);
        var same = ScaleProcess.Run("run", dir.Combine("all.hocon"), "--data-dir", dir.Combine("d"), "--threads", "1", "--http", "off", "--plain");
        Assert.True(same.ExitCode == 0, same.Stderr);
        var sameTrial = Assert.Single(JsonDocument.Parse(ScaleProcess.Run("results", "all", "--data-dir", dir.Combine("d"), "--format", "json").Stdout)
            .RootElement.EnumerateArray().ToArray());
        foreach (var field in new[] { "retention", "acquisition", "forgetting", "final_loss" })
            Assert.Equal(method.GetProperty(field).GetDouble(), sameTrial.GetProperty(field).GetDouble());   // bit for bit: exact equality of doubles
    }

    [Fact]
    public void A_tiny_text_sweep_ranks_perplexity_lower_is_better_in_results_plot_and_report()
    {
        using var dir = new TempDirectory();
        var world = new Scale.Model.Data.BioWorld(Scale.Model.Data.BioLanguage.English, 5);
        foreach (var (folder, people) in new[] { ("old", world.DrawPopulation(5)), ("new", world.DrawPopulation(5)) })
        {
            Directory.CreateDirectory(dir.Combine(folder));
            var documents = Scale.Model.Data.BioRenderer.Corpus(people, Scale.Model.Data.BioLanguage.English, 8, 1);
            for (int i = 0; i < documents.Count; i++) File.WriteAllText(dir.Combine(folder, $"{i}.txt"), documents[i]);
        }
        var start = TinySweep.IndexOf("experiment {", StringComparison.Ordinal);
        var experiment = TinySweep[start..TinySweep.IndexOf("\n  methods = [", StringComparison.Ordinal)]
            .Replace("old {", $"old {{\n kind = text\n folder = \"{dir.Combine("old")}\"\n held-out-fraction = 0.25", StringComparison.Ordinal)
            .Replace("new {", $"new {{\n kind = text\n folder = \"{dir.Combine("new")}\"\n held-out-fraction = 0.25", StringComparison.Ordinal)
            .Replace("people = 4\n", "", StringComparison.Ordinal).Replace("renderings = 6\n", "", StringComparison.Ordinal);
        File.WriteAllText(dir.Combine("text.hocon"), $$"""
            sweep {
              name = text
              {{experiment}}
              methods = [frozen]
              search { rates { methods = [preserve], grid { lr = [1e-4, 1e-2] } } }
              checkpoint-every = 30
            }
            """);

        var run = ScaleProcess.Run("run", dir.Combine("text.hocon"), "--data-dir", dir.Combine("d"), "--threads", "1", "--http", "off", "--plain");
        Assert.True(run.ExitCode == 0, run.Stderr + run.Stdout);
        var rows = JsonDocument.Parse(ScaleProcess.Run("results", "text", "--data-dir", dir.Combine("d"), "--format", "json").Stdout).RootElement.EnumerateArray().ToArray();
        var best = ScaleProcess.Run("results", "text", "--data-dir", dir.Combine("d"), "--best", "--max-forgetting", "1000000");
        var plot = ScaleProcess.Run("plot", "text", "--data-dir", dir.Combine("d"), "--out", dir.Combine("pareto.png"));

        Assert.All(rows, r => Assert.True(r.GetProperty("lower_is_better").GetBoolean()));
        var lowest = rows.MinBy(r => r.GetProperty("acquisition").GetDouble()).GetProperty("trial").GetString()!;
        var highest = rows.MaxBy(r => r.GetProperty("acquisition").GetDouble()).GetProperty("trial").GetString()!;
        Assert.NotEqual(lowest, highest);
        Assert.True(best.ExitCode == 0, best.Stderr);
        Assert.StartsWith(lowest + " ", best.Stdout);   // every trial is within the bound: the lowest new-text perplexity wins
        Assert.Contains("lowest acquisition", best.Stdout);
        Assert.True(plot.ExitCode == 0, plot.Stderr);
        // The front the plot prints is the set of trials no other trial beats on both perplexities (lower is better).
        double R(JsonElement r) => r.GetProperty("retention").GetDouble();
        double A(JsonElement r) => r.GetProperty("acquisition").GetDouble();
        var expected = rows.Where(p => !rows.Any(q => R(q) <= R(p) && A(q) <= A(p) && (R(q) < R(p) || A(q) < A(p))))
                           .Select(r => r.GetProperty("trial").GetString()!).Order().ToList();
        var printed = plot.Stdout.Split('\n').Skip(1).Where(l => l.StartsWith("  ", StringComparison.Ordinal))
                          .Select(l => l.Trim().Split(' ')[0]).Order().ToList();
        Assert.Equal(expected, printed);
        Assert.True(File.Exists(dir.Combine("pareto.png")));
    }

    [Fact]
    public void A_routing_axis_scores_each_expansion_under_every_rule_evaluate_routes_a_checkpoint_the_same_way_and_export_takes_it_out()
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("routes.hocon");
        // cosine ≥ −2 holds everywhere (always the preservation head: the base); cosine ≥ 2 never (always the adaptation head).
        // With task suites on both sides: a routed row scores them through the routed model.
        File.WriteAllText(file, TinySweep.Replace("methods = [frozen, preserve, route, full]", "methods = [frozen, adapt]\n  routing = [\"cosine:-2\", \"cosine:2\", \"novelty:4\"]")
                                         .Replace("name = recover", "name = routes")
                                         .Replace("    continual {", "    suites { old = [bio-choice], new = [bio-choice] }\n    continual {"));

        var run = ScaleProcess.Run("run", file, "--data-dir", dir.Combine("d"), "--threads", "1", "--http", "off", "--plain");
        Assert.True(run.ExitCode == 0, run.Stderr + run.Stdout);
        var rows = JsonDocument.Parse(ScaleProcess.Run("results", "routes", "--data-dir", dir.Combine("d"), "--format", "json").Stdout).RootElement
            .EnumerateArray().ToDictionary(r => r.GetProperty("trial").GetString()!);
        var frozen = rows.Values.Single(r => r.GetProperty("method").GetString() == "frozen");
        var adapt = rows.Values.Single(r => r.GetProperty("method").GetString() == "adapt");
        string id = adapt.GetProperty("trial").GetString()!;
        double Score(JsonElement r, string field) => r.GetProperty(field).GetDouble();

        Assert.Equal(5, rows.Count);   // two trained trials and three rows routed from the adapt trial
        var preserving = rows[$"{id}@cosine:-2"];
        var adapting = rows[$"{id}@cosine:2"];
        Assert.Equal(id, preserving.GetProperty("from").GetString());
        Assert.Equal("route", preserving.GetProperty("method").GetString());
        Assert.Equal(Score(frozen, "retention"), Score(preserving, "retention"));       // the preservation head is the base
        Assert.Equal(Score(frozen, "acquisition"), Score(preserving, "acquisition"));
        Assert.Equal(Score(adapt, "retention"), Score(adapting, "retention"));          // the adaptation head is Adapt
        Assert.Equal(frozen.GetProperty("tasks").GetRawText(), preserving.GetProperty("tasks").GetRawText());   // the suites too
        Assert.Equal(adapt.GetProperty("tasks").GetRawText(), adapting.GetProperty("tasks").GetRawText());
        Assert.Equal(["old", "new"], adapt.GetProperty("tasks").EnumerateArray().Select(t => t.GetProperty("side").GetString()));
        // The trial's log carries the same task results: its final scores, and each routed row's.
        var log = Scale.Actors.Trainers.TrialLog.Lines(Path.Combine(dir.Combine("d"), "sweeps", "routes", "trials", id))
            .Select(l => JsonDocument.Parse(l).RootElement).ToList();
        string Compact(JsonElement e) => JsonSerializer.Serialize(e);
        Assert.Equal(Compact(adapt.GetProperty("tasks")), Compact(log.Single(l => l.GetProperty("event").GetString() == "scored").GetProperty("tasks")));
        Assert.Equal(Compact(adapting.GetProperty("tasks")),
                     Compact(log.Single(l => l.GetProperty("event").GetString() == "routed" && l.GetProperty("routing").GetString() == "cosine:2").GetProperty("tasks")));
        Assert.Equal(Score(adapt, "acquisition"), Score(adapting, "acquisition"));
        Assert.True(rows.ContainsKey($"{id}@novelty:4"));

        var evaluated = ScaleProcess.Run("evaluate", file, id, "--checkpoint", "final", "--route", "cosine:-2", "--data-dir", dir.Combine("d"), "--threads", "1");
        Assert.True(evaluated.ExitCode == 0, evaluated.Stderr);
        Assert.Contains($"routed by cosine:-2", evaluated.Stdout);
        Assert.Contains($"retention {Score(preserving, "retention"):0.000}, acquisition {Score(preserving, "acquisition"):0.000}", evaluated.Stdout);
        var oldChoice = preserving.GetProperty("tasks")[0].GetProperty("metrics")[0];
        Assert.Contains(FormattableString.Invariant($"old bio-choice acc {oldChoice.GetProperty("value").GetDouble():0.000} ± {oldChoice.GetProperty("stderr").GetDouble():0.000}"), evaluated.Stdout);
        var refused = ScaleProcess.Run("evaluate", file, frozen.GetProperty("trial").GetString()!, "--route", "cosine", "--data-dir", dir.Combine("d"));
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("is the frozen base, which has nothing to route between", refused.Stderr);

        // The trained Adapt trial taken out of Scale, and generating from there; exporting into an existing directory is refused.
        var exported = ScaleProcess.Run("export", file, id, "--out", dir.Combine("adapt-model"), "--data-dir", dir.Combine("d"));
        Assert.True(exported.ExitCode == 0, exported.Stderr + exported.Stdout);
        Assert.Contains("scale.json", exported.Stdout);
        var generated = ScaleProcess.Run("generate", "--model", dir.Combine("adapt-model"), "--prompt", "Anna was born", "--max-new-tokens", "4");
        Assert.True(generated.ExitCode == 0, generated.Stderr);
        var again = ScaleProcess.Run("export", file, id, "--out", dir.Combine("adapt-model"), "--data-dir", dir.Combine("d"));
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("already exists", again.Stderr);
    }

    private static JsonElement[] Results(string dataDir)
    {
        var results = ScaleProcess.Run("results", "recover", "--format", "json", "--data-dir", dataDir);
        Assert.True(results.ExitCode == 0, results.Stderr);
        return JsonDocument.Parse(results.Stdout).RootElement.EnumerateArray().ToArray();
    }

    [Fact]
    public void A_sweep_killed_mid_trial_resumes_without_rerunning_or_losing_a_trial_and_ends_bit_for_bit_as_an_uninterrupted_run()
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("recover.hocon");
        File.WriteAllText(file, TinySweep.Replace("checkpoint-every = 5", "checkpoint-every = 5\n  evaluate-every = 4"));   // scores during training too
        string interrupted = dir.Combine("interrupted"), straight = dir.Combine("straight");

        // Run 1: SIGKILL once the second trained trial (route) has written its checkpoint at step 10.
        var killed = new TaskCompletionSource();
        var lines = new List<string>();
        using (var run = ScaleProcess.Start(line =>
               {
                   lock (lines) lines.Add(line);
                   if (line.StartsWith("trial route-", StringComparison.Ordinal) && line.EndsWith("checkpoint at step 10", StringComparison.Ordinal))
                       killed.TrySetResult();
               }, "run", file, "--data-dir", interrupted, "--threads", "1"))
        {
            Assert.True(killed.Task.Wait(TimeSpan.FromMinutes(4)), "route never reached its step-10 checkpoint:\n" + string.Join("\n", lines));
            run.Kill();   // SIGKILL
            run.WaitForExit();
        }
        var before = Results(interrupted).ToDictionary(t => t.GetProperty("method").GetString()!);
        Assert.Equal("completed", before["preserve"].GetProperty("state").GetString());
        Assert.Equal("running", before["route"].GetProperty("state").GetString());
        Assert.True(before["route"].GetProperty("last_checkpoint_step").GetInt64() >= 10);
        var status = ScaleProcess.Run("status", "recover", "--data-dir", interrupted);
        Assert.Contains("interrupted (resumes with `scale run`)", status.Stdout);

        // Run 2: the same command resumes; an uninterrupted run of the same sweep is the reference.
        var resumed = ScaleProcess.Run("run", file, "--data-dir", interrupted, "--threads", "1");
        var reference = ScaleProcess.Run("run", file, "--data-dir", straight, "--threads", "1");
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.True(reference.ExitCode == 0, reference.Stderr);
        Assert.Contains("Resuming sweep recover", resumed.Stdout);
        var preserveId = before["preserve"].GetProperty("trial").GetString();
        var routeId = before["route"].GetProperty("trial").GetString();
        Assert.DoesNotContain($"trial {preserveId} started", resumed.Stdout);       // completed trials are not re-run
        Assert.Contains($"trial {routeId} started (attempt 2)", resumed.Stdout);
        Assert.DoesNotContain($"trial {routeId} step 6/60", resumed.Stdout);       // it resumed from its checkpoint, not from step 0

        var after = Results(interrupted);
        var expected = Results(straight);
        Assert.Equal(expected.Select(t => t.GetProperty("trial").GetString()), after.Select(t => t.GetProperty("trial").GetString()));
        foreach (var (got, want) in after.Zip(expected))
        {
            Assert.Equal("completed", got.GetProperty("state").GetString());
            foreach (var metric in new[] { "retention", "acquisition", "forgetting", "final_loss" })
                Assert.Equal(want.GetProperty(metric).ToString(), got.GetProperty(metric).ToString());
            // The score curve of the resumed trial is the uninterrupted one, point for point (16 points: steps 0, 4, 8, …, 60).
            Assert.Equal(want.GetProperty("curve").ToString(), got.GetProperty("curve").ToString());
            if (got.GetProperty("method").GetString() != "frozen") Assert.Equal(16, got.GetProperty("curve").GetArrayLength());
        }
        var attempts = after.ToDictionary(t => t.GetProperty("method").GetString()!, t => t.GetProperty("attempts").GetInt32());
        Assert.Equal(1, attempts["preserve"]);
        Assert.Equal(2, attempts["route"]);
        Assert.Contains("recover: 4 trials: 4 completed", ScaleProcess.Run("status", "--data-dir", interrupted).Stdout);
        var csv = ScaleProcess.Run("results", "recover", "--format", "csv", "--data-dir", straight).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("trial,method,params,state,retention,acquisition,forgetting,attempts", csv[0]);
        Assert.Equal(5, csv.Length);
        var png = dir.Combine("plots", "front.png");
        var plot = ScaleProcess.Run("plot", "recover", "--out", png, "--data-dir", straight);
        Assert.True(plot.ExitCode == 0, plot.Stderr);
        Assert.Contains("4 trials", plot.Stdout);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(png)[..4]);

        var routeResult = after.Single(t => t.GetProperty("trial").GetString() == routeId);
        var evaluated = ScaleProcess.Run("evaluate", file, routeId!, "--checkpoint", "final", "--data-dir", interrupted, "--threads", "1");
        Assert.True(evaluated.ExitCode == 0, evaluated.Stderr);
        Assert.Contains(FormattableString.Invariant($"retention {routeResult.GetProperty("retention").GetDouble():0.000}, acquisition {routeResult.GetProperty("acquisition").GetDouble():0.000}"), evaluated.Stdout);

        var report = ScaleProcess.Run("report", "recover", "--out", dir.Combine("report"), "--data-dir", interrupted);
        Assert.True(report.ExitCode == 0, report.Stderr);
        Assert.Contains("4 points in pareto.png, 3 loss curves", report.Stdout);   // one point per completed trial; frozen does not train
        foreach (var image in new[] { "loss.png", "pareto.png", "retention-by-attribute.png", "acquisition-by-attribute.png" })
            Assert.True(new FileInfo(dir.Combine("report", image)).Length > 1000, image);
        var markdown = File.ReadAllText(dir.Combine("report", "report.md"));
        Assert.All(after, t => Assert.Contains(t.GetProperty("trial").GetString()!, markdown));
        var processLog = File.ReadAllLines(Path.Combine(interrupted, "sweeps", "recover", "scale.log.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Contains(processLog, e => e.GetProperty("sweep").GetString() == "recover" && e.TryGetProperty("trial", out var t) && t.GetString() == routeId
                                         && e.GetProperty("@mt").GetString()!.Contains("started"));
        var routeLog = Scale.Actors.Trainers.TrialLog.Lines(Path.Combine(interrupted, "sweeps", "recover", "trials", routeId!)).ToList();
        Assert.Contains(routeLog, l => l.Contains("\"attempt\":2") && l.Contains("\"event\":\"started\""));
    }

    [Fact]
    public void The_pareto_front_keeps_exactly_the_points_nothing_beats_on_both_axes()
    {
        static ResultPoint P(string id, double retention, double acquisition) => new("s", id, "m", retention, acquisition, 0.9);
        var points = new[] { P("a", 0.1, 0.9), P("b", 0.5, 0.5), P("c", 0.4, 0.4), P("d", 0.9, 0.0), P("e", 0.5, 0.2), P("f", 0.1, 0.9) };

        var front = ResultPlot.ParetoFront(points);

        Assert.Equal(["a", "b", "d"], front.Select(p => p.Trial));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int SendSignal(int pid, int signal);

    [Theory]
    [InlineData(2, 130)]    // SIGINT, as Ctrl+C sends
    [InlineData(15, 143)]   // SIGTERM, as a scheduler (Slurm's scancel, systemd, docker stop) sends
    public void Ctrl_C_or_SIGTERM_stops_a_sweep_at_once_checkpointing_its_running_trial_and_the_same_command_resumes_it(int signal, int exitCode)
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("long.hocon");
        // No periodic checkpoint before step 2500: the one the trial has when it stops is the one written on the way out.
        File.WriteAllText(file, TinySweep.Replace("steps = 60", "steps = 3000").Replace("checkpoint-every = 5", "checkpoint-every = 2500"));
        var training = new TaskCompletionSource<long>();
        var lines = new List<string>();
        using var run = ScaleProcess.Start(line =>
        {
            lock (lines) lines.Add(line);
            var step = System.Text.RegularExpressions.Regex.Match(line, @"^trial preserve-\S+ step (\d+)/3000 ");
            if (step.Success && long.Parse(step.Groups[1].Value) >= 10) training.TrySetResult(long.Parse(step.Groups[1].Value));
        }, "run", file, "--data-dir", dir.Combine("d"), "--threads", "1", "--plain");
        Assert.True(training.Task.Wait(TimeSpan.FromMinutes(4)), string.Join("\n", lines));

        Assert.Equal(0, SendSignal(run.Id, signal));
        var stopping = Stopwatch.StartNew();
        bool stopped = run.WaitForExit(TimeSpan.FromMinutes(2));
        lock (lines) Assert.True(stopped, $"scale run did not stop on signal {signal} within 2 minutes:\n{string.Join("\n", lines.TakeLast(15))}");
        run.WaitForExit();

        Assert.Equal(exitCode, run.ExitCode);
        lock (lines) Assert.Contains(lines, l => l.StartsWith("Interrupted: 4 trials: 1 completed, 1 running", StringComparison.Ordinal));
        var status = ScaleProcess.Run("status", "recover", "--data-dir", dir.Combine("d"));
        Assert.Contains("interrupted (resumes with `scale run`)", status.Stdout);
        var checkpoint = System.Text.RegularExpressions.Regex.Match(status.Stdout, @"preserve-\w+\s+preserve\s+interrupted\s+attempt 1, checkpoint at step (\d+)");
        Assert.True(checkpoint.Success, status.Stdout);
        Assert.InRange(long.Parse(checkpoint.Groups[1].Value), training.Task.Result, 2499);   // written on the way out, where it stopped
    }

    [Fact]
    public void The_operators_endpoint_serves_health_prometheus_metrics_and_the_sweep_as_json()
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("long.hocon");
        File.WriteAllText(file, TinySweep.Replace("steps = 60", "steps = 3000"));
        var ready = new TaskCompletionSource<string>();
        string? url = null;
        var lines = new List<string>();
        using var run = ScaleProcess.Start(line =>
        {
            lock (lines) lines.Add(line);
            var found = System.Text.RegularExpressions.Regex.Match(line, @"^Operators' endpoint: (http://127\.0\.0\.1:\d+)");
            if (found.Success) url = found.Groups[1].Value;
            if (url is not null && line.StartsWith("trial preserve-", StringComparison.Ordinal) && line.EndsWith("checkpoint at step 10", StringComparison.Ordinal))
                ready.TrySetResult(url);
        }, "run", file, "--data-dir", dir.Combine("d"), "--threads", "1", "--http", "127.0.0.1:0");
        try
        {
            Assert.True(ready.Task.Wait(TimeSpan.FromMinutes(4)), string.Join("\n", lines));
            using var http = new HttpClient { BaseAddress = new Uri(ready.Task.Result), Timeout = TimeSpan.FromSeconds(30) };

            var live = http.GetAsync("/health/live").Result;
            var readiness = http.GetAsync("/health/ready").Result;
            // The endpoint's view follows the journal in the background (at once on each event written here, else every 2 s).
            var metrics = http.GetStringAsync("/metrics").Result;
            var clock = Stopwatch.StartNew();
            while (!PrometheusText.Parse(metrics).Any(s => s.Name == "scale_trials" && s.Labels["state"] == "running" && s.Value == 1) && clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                Thread.Sleep(200);   // polling interval, not a synchronisation
                metrics = http.GetStringAsync("/metrics").Result;
            }
            var sweeps = JsonDocument.Parse(http.GetStringAsync("/api/sweeps").Result).RootElement;
            var trials = JsonDocument.Parse(http.GetStringAsync("/api/sweeps/recover/trials").Result).RootElement;
            var cluster = JsonDocument.Parse(http.GetStringAsync("/api/cluster").Result).RootElement;
            var member = Assert.Single(cluster.GetProperty("members").EnumerateArray());   // the process's own cluster of one
            Assert.StartsWith("akka.ssl.tcp://scale@127.0.0.1:", member.GetProperty("address").GetString());   // TLS, pinned to the run's own certificate
            Assert.NotEqual("akka.ssl.tcp://scale@127.0.0.1:0", member.GetProperty("address").GetString());
            Assert.Equal("up", member.GetProperty("status").GetString());
            Assert.Equal(0, cluster.GetProperty("unreachable").GetArrayLength());

            Assert.Equal(System.Net.HttpStatusCode.OK, live.StatusCode);
            Assert.Equal(System.Net.HttpStatusCode.OK, readiness.StatusCode);
            var samples = PrometheusText.Parse(metrics);
            Assert.Contains(samples, s => s.Name == "scale_trials" && s.Labels["state"] == "running" && s.Value == 1);
            Assert.Contains(samples, s => s.Name == "scale_trials" && s.Labels["state"] == "completed" && s.Value >= 1);
            Assert.Contains(samples, s => s.Name == "scale_trials" && s.Labels["state"] == "failed" && s.Value == 0);   // every state, zero too
            Assert.Contains(samples, s => s.Name == "scale_trial_attempts_failed_total" && s.Value == 0);
            Assert.Contains(samples, s => s.Name == "target_info" && s.Labels["service_name"] == "scale");
            Assert.Contains(samples, s => s.Name == "scale_trainer_tokens_per_second" && s.Labels["trial"].StartsWith("preserve-") && s.Value > 0);
            Assert.Contains(samples, s => s.Name == "scale_trainer_steps_per_second" && s.Labels.ContainsKey("trainer"));
            Assert.Contains(samples, s => s.Name == "scale_trial_checkpoint_age_seconds" && s.Value >= 0);
            Assert.Contains(samples, s => s.Name == "scale_journal_write_seconds_count" && s.Value > 0);
            Assert.Contains(samples, s => s.Name == "scale_cluster_members" && s.Labels["status"] == "up" && s.Value == 1);
            Assert.Contains(samples, s => s.Name == "scale_cluster_unreachable_members" && s.Value == 0);
            var status = ScaleProcess.Run("status", "recover", "--data-dir", dir.Combine("d"));
            Assert.Contains("running now", status.Stdout);
            Assert.Matches(@"member .+ \[seed, worker\] up", status.Stdout);
            Assert.Contains("unreachable members: 0", status.Stdout);
            Assert.Matches(@"trainer \S+ \(cpu\): preserve-\w+ step \d+/3000", status.Stdout);
            Assert.Equal("recover", sweeps[0].GetProperty("name").GetString());
            Assert.Equal(4, sweeps[0].GetProperty("trials").GetInt32());
            Assert.Equal(4, trials.GetArrayLength());
            // A page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) is refused: the Host must be loopback's.
            using var rebound = new HttpRequestMessage(HttpMethod.Get, "/api/sweeps");
            rebound.Headers.Host = "scale.attacker.example";
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, http.Send(rebound).StatusCode);
            using var local = new HttpRequestMessage(HttpMethod.Get, "/api/sweeps");
            local.Headers.Host = "localhost:" + new Uri(ready.Task.Result).Port;
            Assert.Equal(System.Net.HttpStatusCode.OK, http.Send(local).StatusCode);
        }
        finally
        {
            if (!run.HasExited) SendSignal(run.Id, 2);
            run.WaitForExit(TimeSpan.FromMinutes(1));
        }
    }

    [Fact]
    [Trait("Category", "FaultInjection")]
    public void Another_process_can_neither_join_a_local_run_nor_deliver_anything_to_it()
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("long.hocon");
        File.WriteAllText(file, TinySweep.Replace("steps = 60", "steps = 3000"));
        var endpoint = new TaskCompletionSource<string>();
        var checkpoints = new List<long>();
        using var checkpointed = new SemaphoreSlim(0);
        using var run = ScaleProcess.Start(line =>
        {
            var found = System.Text.RegularExpressions.Regex.Match(line, @"^Operators' endpoint: (http://127\.0\.0\.1:\d+)");
            if (found.Success) endpoint.TrySetResult(found.Groups[1].Value);
            var step = System.Text.RegularExpressions.Regex.Match(line, @"^trial \S+ checkpoint at step (\d+)$");
            if (!step.Success) return;
            lock (checkpoints) checkpoints.Add(long.Parse(step.Groups[1].Value));
            checkpointed.Release();
        }, "run", file, "--data-dir", dir.Combine("d"), "--threads", "1", "--http", "127.0.0.1:0");
        try
        {
            Assert.True(endpoint.Task.Wait(TimeSpan.FromMinutes(4)), "no endpoint line");
            using var http = new HttpClient { BaseAddress = new Uri(endpoint.Task.Result), Timeout = TimeSpan.FromSeconds(30) };
            string Members() => JsonDocument.Parse(http.GetStringAsync("/api/cluster").Result).RootElement.GetProperty("members").ToString();
            var address = JsonDocument.Parse(http.GetStringAsync("/api/cluster").Result).RootElement.GetProperty("members")[0].GetProperty("address").GetString()!;
            Assert.StartsWith("akka.ssl.tcp://scale@127.0.0.1:", address);
            var port = address.Split(':')[^1];

            // A raw TCP client: what it sends is not a TLS handshake with the run's certificate, and nothing reaches an actor.
            using (var raw = new System.Net.Sockets.TcpClient("127.0.0.1", int.Parse(port)))
            {
                var stream = raw.GetStream();
                stream.Write(System.Text.Encoding.ASCII.GetBytes("akka.tcp://scale@127.0.0.1:1/user/sweep-recover RequestWork\n"));
                stream.ReadTimeout = 30_000;
                try
                {
                    while (stream.Read(new byte[256]) > 0) { }   // until the run closes the connection
                }
                catch (IOException)
                {
                    // reset by the run: as good as closed
                }
            }
            // A stock worker (no TLS), and a worker with TLS and a certificate of its own that trusts anything: neither joins.
            var plain = ScaleProcess.Run("worker", "--seeds", $"127.0.0.1:{port}", "--join-timeout", "20", "--http", "off", "--data-dir", dir.Combine("w1"));
            using (var key = System.Security.Cryptography.ECDsa.Create())
            {
                var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=intruder", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
                using var own = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
                File.WriteAllBytes(dir.Combine("intruder.pfx"), own.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pkcs12));
            }
            var tls = ScaleProcess.Run("worker", "--seeds", $"127.0.0.1:{port}", "--join-timeout", "20", "--http", "off", "--data-dir", dir.Combine("w2"),
                                       "--tls-certificate", dir.Combine("intruder.pfx"), "--tls-insecure");

            Assert.True(plain.ExitCode != 0, plain.Stdout + plain.Stderr);
            Assert.Contains("could not join the cluster", plain.Stderr + plain.Stdout);
            Assert.True(tls.ExitCode != 0, tls.Stdout + tls.Stderr);
            Assert.Contains("could not join the cluster", tls.Stderr + tls.Stdout);
            Assert.Single(JsonDocument.Parse(Members()).RootElement.EnumerateArray());   // the run alone, still up
            int before;
            lock (checkpoints) before = checkpoints.Count;
            while (true)   // the run goes on training: a checkpoint after the intruders'
            {
                Assert.True(checkpointed.Wait(TimeSpan.FromMinutes(3)), "the run stopped training");
                lock (checkpoints)
                    if (checkpoints.Count > before) break;
            }
            Assert.False(run.HasExited);
        }
        finally
        {
            if (!run.HasExited) SendSignal(run.Id, 2);
            run.WaitForExit(TimeSpan.FromMinutes(1));
        }
    }

    [Fact]
    public void Bad_input_gets_a_clear_error_and_exit_code_2()
    {
        using var dir = new TempDirectory();
        var bad = dir.Combine("bad.hocon");
        File.WriteAllText(bad, "sweep {\n name = x\n experiment = bio\n methods = [full]\n retry-budget = -1\n}");

        var run = ScaleProcess.Run("run", bad, "--data-dir", dir.Combine("d"));
        var missing = ScaleProcess.Run("results", "nothing", "--data-dir", dir.Combine("d"));
        var format = ScaleProcess.Run("results", "nothing", "--format", "xml", "--data-dir", dir.Combine("d"));
        var empty = ScaleProcess.Run("status", "--data-dir", dir.Combine("d"));

        Assert.Equal(2, run.ExitCode);
        Assert.Contains("bad.hocon: 'sweep.retry-budget' must be at least 0", run.Stderr);
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("No sweep 'nothing' in", missing.Stderr);
        Assert.Equal(2, format.ExitCode);
        Assert.Contains("--format must be one of table, csv, json", format.Stderr);
        Assert.Equal(0, empty.ExitCode);
        Assert.Contains("No sweeps in", empty.Stdout);
    }

    [Fact]
    public void A_journal_that_cannot_be_opened_stops_the_run_with_the_cause_and_how_to_resume()
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("recover.hocon");
        File.WriteAllText(file, TinySweep);
        Directory.CreateDirectory(dir.Combine("d", "sweeps.db"));   // a directory where the database file should be

        var run = ScaleProcess.Run("run", file, "--data-dir", dir.Combine("d"));

        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"the sweep journal {Path.GetFullPath(Path.Combine(dir.Combine("d"), "sweeps.db"))} cannot be opened", run.Stderr);
        Assert.Contains($"run `scale run {file} --data-dir {dir.Combine("d")}` to resume it", run.Stderr);
    }

    [Fact]
    public void A_sweep_resumed_with_a_changed_experiment_is_refused()
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("recover.hocon");
        File.WriteAllText(file, TinySweep.Replace("methods = [frozen, preserve, route, full]", "methods = [frozen]"));
        var first = ScaleProcess.Run("run", file, "--data-dir", dir.Combine("d"), "--threads", "1");
        File.WriteAllText(file, TinySweep.Replace("methods = [frozen, preserve, route, full]", "methods = [frozen]").Replace("renderings = 6\n            }\n            pretrain", "renderings = 6\n            }\n            pretrain").Replace("steps = 60", "steps = 61"));
        var changed = ScaleProcess.Run("run", file, "--data-dir", dir.Combine("d"), "--threads", "1");

        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.Equal(2, changed.ExitCode);
        Assert.Contains("was started with a different experiment", changed.Stderr);
    }

    [Fact]
    public void Only_one_process_at_a_time_holds_a_sweep()
    {
        using var dir = new TempDirectory();
        using (var first = SweepLock.TryAcquire(dir.Combine("s")))
        {
            Assert.NotNull(first);
            Assert.Null(SweepLock.TryAcquire(dir.Combine("s")));
            Assert.Contains("being run by another scale process", Assert.Throws<ArgumentException>(() => SweepLock.Acquire(dir.Combine("s"), "s")).Message);
        }
        using var again = SweepLock.TryAcquire(dir.Combine("s"));
        Assert.NotNull(again);
    }

    [Fact]
    public void Two_processes_run_two_sweeps_of_one_data_directory_at_once_each_minding_its_own()
    {
        using var dir = new TempDirectory();
        string data = dir.Combine("d");
        var runs = new List<(Process Process, List<string> Lines, TaskCompletionSource Checkpointed)>();
        foreach (var name in new[] { "left", "right" })
        {
            var file = dir.Combine($"{name}.hocon");
            File.WriteAllText(file, TinySweep.Replace("name = recover", $"name = {name}").Replace("steps = 60", "steps = 3000"));
            var lines = new List<string>();
            var checkpointed = new TaskCompletionSource();
            var process = ScaleProcess.Start(line =>
            {
                lock (lines) lines.Add(line);
                if (line.StartsWith("trial preserve-", StringComparison.Ordinal) && line.EndsWith("checkpoint at step 20", StringComparison.Ordinal)) checkpointed.TrySetResult();
            }, "run", file, "--data-dir", data, "--threads", "1", "--http", "off", "--plain");
            runs.Add((process, lines, checkpointed));
        }
        try
        {
            foreach (var (process, lines, checkpointed) in runs)
            {
                bool reached = checkpointed.Task.Wait(TimeSpan.FromMinutes(6));
                lock (lines) Assert.True(reached, string.Join("\n", lines.TakeLast(20)));
            }
            foreach (var (process, lines, _) in runs)
                lock (lines) Assert.False(process.HasExited, string.Join("\n", lines.TakeLast(20)));
        }
        finally
        {
            foreach (var (process, _, _) in runs)
            {
                if (!process.HasExited) SendSignal(process.Id, 2);
                process.WaitForExit(TimeSpan.FromMinutes(1));
            }
        }
        // Each interrupted by its own Ctrl+C, neither touched by the other: no trial re-queued, failed or retried.
        foreach (var (process, lines, _) in runs)
        {
            Assert.Equal(130, process.ExitCode);
            lock (lines) Assert.DoesNotContain(lines, l => l.StartsWith("trial ", StringComparison.Ordinal) && (l.Contains(" re-queued", StringComparison.Ordinal) || l.Contains(" failed", StringComparison.Ordinal)));
        }
        var status = ScaleProcess.Run("status", "--data-dir", data);
        Assert.Equal(0, status.ExitCode);
        Assert.Matches(@"left: .*interrupted", status.Stdout);
        Assert.Matches(@"right: .*interrupted", status.Stdout);
    }
}
