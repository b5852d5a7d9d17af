using Scale.Actors.Reports;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using Scale.Actors.Telemetry;

namespace Scale.Host.Sweeps;

/// <summary>
/// The operators' HTTP endpoint of a `scale` process — a `scale run`, a seed or a worker (ASP.NET Core minimal API,
/// loopback by default): /health/live, /health/ready, /metrics (Prometheus text through OpenTelemetry), the dashboard
/// at / and a JSON API: /api/sweeps, /api/sweeps/{name}/trials, /api/cluster, /api/trainers.
/// </summary>
internal sealed class OperatorEndpoint : IAsyncDisposable
{
    private readonly WebApplication app;

    private OperatorEndpoint(WebApplication app, string address) => (this.app, Address) = (app, address);

    /// <summary>The file in a sweep's directory that names the endpoint of the process running it.</summary>
    public const string AddressFile = "endpoint";

    /// <summary>The address it listens on, with the port actually bound (when 0 was asked for).</summary>
    public string Address { get; }

    /// <summary>
    /// Serves <paramref name="view"/> on <paramref name="hostAndPort"/>. With <paramref name="token"/> (required beyond
    /// loopback) every route but the health probes, the dashboard page and its sign-in needs it, as "Authorization: Bearer …"
    /// or as the session cookie a sign-in sets (POST /login with the token in the form body: the token never travels in a
    /// URL, where logs and browser history would keep it). Bound to loopback, requests must name a loopback host (Host
    /// header), so that a web page elsewhere cannot reach the endpoint through a name it points at 127.0.0.1.
    /// </summary>
    public static async Task<OperatorEndpoint> StartAsync(string hostAndPort, IOperatorView view, string? token)
    {
        CheckAddress(hostAndPort, token);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<Microsoft.Extensions.Hosting.IHostLifetime, CommandLifetime>();   // Ctrl+C belongs to the command
        builder.WebHost.UseUrls($"http://{hostAndPort}");
        bool loopback = IsLoopback(hostAndPort[..hostAndPort.LastIndexOf(':')]);
        if (loopback)
            builder.Services.Configure<Microsoft.AspNetCore.HostFiltering.HostFilteringOptions>(o =>
            {
                o.AllowedHosts = ["127.0.0.1", "localhost", "[::1]"];
                o.AllowEmptyHosts = false;
            });
        // The service's name and version (Prometheus's target_info); each process gets an instance id of its own.
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("scale", serviceVersion: typeof(OperatorEndpoint).Assembly.GetName().Version?.ToString()))
            .WithMetrics(metrics => metrics
            .AddMeter(SweepMetrics.MeterName)
            .AddView("scale_journal_write_seconds", new ExplicitBucketHistogramConfiguration
            {
                Boundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
            })
            .AddPrometheusExporter());
        var app = builder.Build();
        var json = SweepReport.JsonOptions;
        if (loopback) app.UseHostFiltering();
        if (token is not null)
        {
            var expected = System.Text.Encoding.UTF8.GetBytes(token);
            // The session a sign-in gives: random per process, so a restart ends every session.
            var session = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
            app.Use(async (context, next) =>
            {
                var path = context.Request.Path;
                if (path.StartsWithSegments("/health") || path == "/" || path == "/login" || Authorized(context.Request, expected, session))
                {
                    await next(context);
                    return;
                }
                context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                context.Response.Headers.WWWAuthenticate = "Bearer";
                await context.Response.WriteAsync("a bearer token is required (Authorization: Bearer …, or sign in on the dashboard)\n");
            });
            app.MapPost("/login", async (HttpContext context) =>
            {
                var form = context.Request.HasFormContentType ? await context.Request.ReadFormAsync() : null;
                var given = form?["token"].ToString() ?? "";
                if (!Matches(given, expected)) return Results.Text("wrong token\n", statusCode: StatusCodes.Status401Unauthorized);
                context.Response.Cookies.Append(SessionCookie, session, new CookieOptions
                {
                    HttpOnly = true, SameSite = SameSiteMode.Strict, Path = "/", Secure = context.Request.IsHttps,
                });
                return Results.Redirect("/");
            }).DisableAntiforgery();
        }

        var page = ReadDashboard();
        app.MapGet("/", () => Results.Content(page, "text/html; charset=utf-8"));
        app.MapGet("/health/live", () => Results.Text("live\n"));
        app.MapGet("/health/ready", async () => await view.NotReadyAsync() is { } why
            ? Results.Text($"not ready: {why}\n", statusCode: 503)
            : Results.Text("ready\n"));
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapGet("/api/sweeps", async () =>
        {
            var sweeps = await view.SweepsAsync();
            return Results.Json(sweeps.Where(s => s.Started).Select(state => (object)new
            {
                name = state.SweepId,
                trials = state.Trials.Count,
                by_state = state.Trials.Values.GroupBy(t => t.Status.ToString().ToLowerInvariant()).ToDictionary(g => g.Key, g => g.Count()),
                finished = state.Finished,
                cancelled = view.Cancelled.Contains(state.SweepId!),
                unprepared = state.Finished ? null : view.Unprepared.GetValueOrDefault(state.SweepId!),
            }).Concat(view.Quarantined.Select(q => (object)new { name = q.Key, quarantined = q.Value })), json);
        });
        app.MapGet("/api/sweeps/{name}/trials", async (string name) =>
            (await view.SweepsAsync()).FirstOrDefault(s => s.SweepId == name) is { } state
                ? Results.Json(SweepReport.Rows(state), json)
                : Results.NotFound(new { error = $"no sweep '{name}' here" }));
        app.MapGet("/api/cluster", () =>
        {
            var current = view.Membership.Current;   // the process's own Akka.Cluster state
            return Results.Json(new
            {
                members = current.Members.Select(m => new { address = m.Address, roles = m.Roles, status = m.Status }),
                unreachable = current.Unreachable,
            }, json);
        });
        app.MapGet("/api/trainers", async () => Results.Json(view.Trainers(await view.SweepsAsync()).Select(t => new
        {
            trainer = t.Trainer, device = t.Device,
            trials = t.Trials.Select(p => new
            {
                trial = p.Trial, sweep = p.Sweep, attempt = p.Attempt, step = p.Step, total_steps = p.TotalSteps, loss = p.Loss,
                tokens_per_second = p.TokensPerSecond, eta_seconds = p.EtaSeconds,
            }),
        }), json));
        app.MapGet("/api/sweeps/{name}/trials/{trial}/loss", async (string name, string trial) =>
        {
            var state = (await view.SweepsAsync()).FirstOrDefault(s => s.SweepId == name);
            if (state is null || !state.Trials.ContainsKey(trial) || view.TrialDirectory(name, trial) is not { } directory)
                return Results.NotFound(new { error = $"no trial '{trial}' in sweep '{name}' here" });
            var curve = Actors.Trainers.TrialLog.LossCurve(directory);
            int every = Math.Max(1, curve.Count / 500);   // at most about 500 points per curve
            return Results.Json(curve.Where((_, i) => i % every == 0 || i == curve.Count - 1).Select(c => new[] { c.Step, c.Loss }), json);
        });
        try
        {
            await app.StartAsync();
        }
        catch
        {
            await app.DisposeAsync();   // a host that failed to start must not keep anything of the process (its signal handling included)
            throw;
        }
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() ?? $"http://{hostAndPort}";
        return new OperatorEndpoint(app, bound);
    }

    /// <summary>Checks an --http value (host:port or off) and its token before anything starts: beyond loopback, a token is required.</summary>
    public static void CheckAddress(string address, string? token)
    {
        if (address.Equals("off", StringComparison.OrdinalIgnoreCase)) return;
        int colon = address.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(address[(colon + 1)..], out int port) || port is < 0 or > 65535)
            throw new ArgumentException($"--http must be host:port (e.g. 127.0.0.1:8787) or off, got '{address}'.");
        if (token is null && !IsLoopback(address[..colon]))
            throw new ArgumentException($"--http {address} serves beyond this machine: give a bearer token (--http-token-file FILE or SCALE_HTTP_TOKEN), or bind 127.0.0.1.");
        if (token is { Length: < 16 }) throw new ArgumentException("the HTTP bearer token must be at least 16 characters.");
    }

    /// <summary>The endpoint's bearer token: the first line of <paramref name="file"/>, else SCALE_HTTP_TOKEN, else none.</summary>
    public static string? Token(string? file) => Commands.Secrets.Read(null, file, "SCALE_HTTP_TOKEN", "--http-token");

    /// <summary>
    /// Starts the endpoint unless it is off; a busy port is reported and the process goes on without it. Writes the bound
    /// address to <paramref name="addressFile"/> when given (for `scale status`).
    /// </summary>
    public static async Task<OperatorEndpoint?> StartOrReport(string address, IOperatorView view, string? token, string? addressFile = null)
    {
        if (address.Equals("off", StringComparison.OrdinalIgnoreCase)) return null;
        try
        {
            var endpoint = await StartAsync(address, view, token);
            Console.WriteLine($"Operators' endpoint: {endpoint.Address} (dashboard at /; /health/live, /health/ready, /metrics, /api/sweeps)");
            if (addressFile is not null) File.WriteAllText(addressFile, endpoint.Address);
            return endpoint;
        }
        catch (IOException e)
        {
            Console.WriteLine($"Note: no operators' endpoint: cannot listen on {address} ({e.Message}); use --http host:port or --http off.");
            return null;
        }
    }

    public static bool IsLoopback(string host)
        => host is "localhost" || (System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip));

    /// <summary>The cookie that carries a signed-in dashboard's session.</summary>
    public const string SessionCookie = "scale_session";

    private static bool Authorized(HttpRequest request, byte[] expected, string session)
    {
        if (request.Headers.Authorization.ToString() is { } header && header.StartsWith("Bearer ", StringComparison.Ordinal))
            return Matches(header["Bearer ".Length..].Trim(), expected);
        return request.Cookies.TryGetValue(SessionCookie, out var cookie) && Matches(cookie, System.Text.Encoding.UTF8.GetBytes(session));
    }

    private static bool Matches(string given, byte[] expected)
        => given.Length > 0 && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(System.Text.Encoding.UTF8.GetBytes(given), expected);

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
