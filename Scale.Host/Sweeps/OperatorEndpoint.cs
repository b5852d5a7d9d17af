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

    /// <summary>The address it listens on, with the port actually bound (when 0 was asked for).</summary>
    public string Address { get; }

    public static async Task<OperatorEndpoint> StartAsync(string hostAndPort, SweepSystem system, SweepTelemetry telemetry)
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
        await app.StartAsync();
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() ?? $"http://{hostAndPort}";
        return new OperatorEndpoint(app, bound);
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
