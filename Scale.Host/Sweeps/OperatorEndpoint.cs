using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using Scale.Actors.Telemetry;

namespace Scale.Host.Sweeps;

/// <summary>
/// The operators' HTTP endpoint of a `scale run` process (ASP.NET Core minimal API, loopback by default):
/// /health/live, /health/ready (the journal answers), /metrics (Prometheus text through OpenTelemetry) and a JSON
/// API: /api/sweeps and /api/sweeps/{name}/trials.
/// </summary>
internal sealed class OperatorEndpoint : IAsyncDisposable
{
    private readonly WebApplication app;

    private OperatorEndpoint(WebApplication app, string address) => (this.app, Address) = (app, address);

    /// <summary>The file in a sweep's directory that names the endpoint of the process running it.</summary>
    public const string AddressFile = "endpoint";

    /// <summary>The address it listens on, with the port actually bound (when 0 was asked for).</summary>
    public string Address { get; }

    public static async Task<OperatorEndpoint> StartAsync(string hostAndPort, SweepSystem system, SweepTelemetry telemetry, string sweepDirectory)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<Microsoft.Extensions.Hosting.IHostLifetime, CommandLifetime>();   // Ctrl+C belongs to the command
        builder.WebHost.UseUrls($"http://{hostAndPort}");
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(SweepMetrics.MeterName)
            .AddView("scale_journal_write_seconds", new ExplicitBucketHistogramConfiguration
            {
                Boundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
            })
            .AddPrometheusExporter());
        var app = builder.Build();
        var json = new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

        var page = ReadDashboard();
        app.MapGet("/", () => Results.Content(page, "text/html; charset=utf-8"));
        app.MapGet("/health/live", () => Results.Text("live\n"));
        app.MapGet("/health/ready", async () =>
        {
            try
            {
                var ask = system.StateAsync();
                if (await Task.WhenAny(ask, Task.Delay(TimeSpan.FromSeconds(5))) == ask && (await ask).Started)
                    return Results.Text("ready\n");
                return Results.Text("not ready: the sweep's journal does not answer\n", statusCode: 503);
            }
            catch (Exception e)
            {
                return Results.Text($"not ready: {e.Message}\n", statusCode: 503);
            }
        });
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapGet("/api/sweeps", () =>
        {
            var state = telemetry.Snapshot();
            return Results.Json(new[]
            {
                new
                {
                    name = state.SweepId,
                    trials = state.Trials.Count,
                    by_state = state.Trials.Values.GroupBy(t => t.Status.ToString().ToLowerInvariant()).ToDictionary(g => g.Key, g => g.Count()),
                    finished = state.Finished,
                },
            }, json);
        });
        app.MapGet("/api/sweeps/{name}/trials", (string name) =>
        {
            var state = telemetry.Snapshot();
            return name == state.SweepId ? Results.Json(SweepReport.Rows(state), json) : Results.NotFound(new { error = $"no sweep '{name}' in this process" });
        });
        app.MapGet("/api/cluster", () =>
        {
            var view = telemetry.Membership.Current;   // the process's own Akka.Cluster state
            return Results.Json(new
            {
                members = view.Members.Select(m => new { address = m.Address, roles = m.Roles, status = m.Status }),
                unreachable = view.Unreachable,
            }, json);
        });
        app.MapGet("/api/trainers", () => Results.Json(telemetry.Trainers.Select(t => new
        {
            trainer = t.Trainer, device = t.Device,
            trials = telemetry.RunningProgress().Where(p => telemetry.TrainerOf(p.TrialId) == t.Trainer).Select(p => new
            {
                trial = p.TrialId, attempt = p.Attempt, step = p.Step, total_steps = p.TotalSteps, loss = p.Loss,
                tokens_per_second = p.TokensPerSecond, eta_seconds = p.EtaSeconds,
            }),
        }), json));
        app.MapGet("/api/sweeps/{name}/trials/{trial}/loss", (string name, string trial) =>
        {
            var state = telemetry.Snapshot();
            if (name != state.SweepId || !state.Trials.ContainsKey(trial)) return Results.NotFound(new { error = $"no trial '{trial}' in sweep '{name}'" });
            var curve = Actors.Trainers.TrialLog.LossCurve(Path.Combine(sweepDirectory, "trials", trial));
            int every = Math.Max(1, curve.Count / 500);   // at most about 500 points per curve
            return Results.Json(curve.Where((_, i) => i % every == 0 || i == curve.Count - 1).Select(c => new[] { c.Step, c.Loss }), json);
        });
        await app.StartAsync();
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() ?? $"http://{hostAndPort}";
        return new OperatorEndpoint(app, bound);
    }

    private static string ReadDashboard()
    {
        using var stream = typeof(OperatorEndpoint).Assembly.GetManifestResourceStream("dashboard/index.html")
            ?? throw new InvalidOperationException("The dashboard page is missing from this build.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
