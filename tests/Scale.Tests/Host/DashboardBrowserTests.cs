using System.Diagnostics;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using Scale.Tests.Model;

namespace Scale.Tests.Host;

/// <summary>The dashboard end to end in a real browser: Debian's headless Chromium driven through chromedriver.</summary>
public class DashboardBrowserTests
{
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int SendSignal(int pid, int signal);

    private static ChromeDriver Browser(string profile)
    {
        DebianPackages.Ensure(() => File.Exists("/usr/bin/chromium") && File.Exists("/usr/bin/chromedriver"), "chromium", "chromium-driver");
        foreach (var needed in new[] { "/usr/bin/chromium", "/usr/bin/chromedriver" })
            if (!File.Exists(needed))
                throw new InvalidOperationException($"{needed} is missing and could not be installed: install Debian's chromium and chromium-driver packages (.ci/run does).");
        var options = new ChromeOptions { BinaryLocation = "/usr/bin/chromium" };
        options.AddArguments("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync", $"--user-data-dir={profile}");
        var service = ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver");
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        return new ChromeDriver(service, options, TimeSpan.FromMinutes(2));
    }

    /// <summary>How long the page may take to show a change: generous, as a loaded 2-core machine (the other test classes run
    /// beside this one) once took 4 minutes to reach the sweep's first checkpoint.</summary>
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(6);

    /// <summary>
    /// Checks <paramref name="condition"/> after each refresh of the page (it dispatches "scale-refreshed" every 2 s)
    /// until it holds: the test waits for the page's own event, not for time.
    /// </summary>
    private static T Until<T>(ChromeDriver browser, Func<T?> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if (condition() is { } value) return value;
            }
            catch (WebDriverException) when (clock.Elapsed < Patience)
            {
                // the table was being re-rendered under the query: look again after the next refresh
            }
            if (clock.Elapsed > Patience) throw new TimeoutException($"The dashboard never showed {what} in {Patience.TotalMinutes:0} minutes.");
            browser.ExecuteAsyncScript("const done = arguments[arguments.length - 1]; window.addEventListener('scale-refreshed', () => done(), { once: true });");
        }
    }

    [Fact]
    public void The_dashboard_shows_the_running_sweep_and_updates_as_a_trial_progresses()
    {
        using var dir = new TempDirectory();
        var file = dir.Combine("long.hocon");
        // Long enough that the first trained trial is still running however slowly the browser starts (about 50 steps/s here).
        // Scored every 25 steps too, so that the chart of scores during training has points to draw.
        // With a task suite on the old people, so that the finished frozen base's row has a task column.
        File.WriteAllText(file, SweepProcessTestsSweep.Tiny.Replace("steps = 60", "steps = 60000").Replace("checkpoint-every = 5", "checkpoint-every = 5\n  evaluate-every = 25")
            .Replace("    continual {", "    suites { old = [bio-choice] }\n    continual {"));
        var ready = new TaskCompletionSource<string>();
        string? url = null;
        using var run = ScaleProcess.Start(line =>
        {
            var found = System.Text.RegularExpressions.Regex.Match(line, @"^Operators' endpoint: (http://127\.0\.0\.1:\d+)");
            if (found.Success) url = found.Groups[1].Value;
            if (url is not null && line.StartsWith("trial preserve-", StringComparison.Ordinal) && line.EndsWith("checkpoint at step 10", StringComparison.Ordinal))
                ready.TrySetResult(url);
        }, "run", file, "--data-dir", dir.Combine("d"), "--threads", "1", "--http", "127.0.0.1:0");
        try
        {
            Assert.True(ready.Task.Wait(TimeSpan.FromMinutes(10)), "the sweep never reached its first checkpoint in 10 minutes");
            using var browser = Browser(dir.Combine("profile"));
            browser.Manage().Timeouts().AsynchronousJavaScript = TimeSpan.FromSeconds(30);
            browser.Navigate().GoToUrl(ready.Task.Result + "/");

            Until(browser, () => browser.FindElements(By.CssSelector("#trials tbody tr")).Count == 4 ? "" : null, "the sweep's 4 trials");
            // Every read of the page goes through Until: the page re-renders its tables on each refresh, so an element
            // found a moment ago may be stale when its text is read.
            Until(browser, () => browser.FindElement(By.Id("sweep-name")).Text.Contains("recover") ? "" : null, "the sweep's name");
            Until(browser, () => browser.FindElement(By.CssSelector("#members .member-status")).Text == "up" ? "" : null, "the member up");
            string StepOfRunningTrial() => browser.FindElement(By.CssSelector("#trials tbody tr[data-trial^='preserve-'] td.step")).Text;
            var first = Until(browser, () => StepOfRunningTrial() is { Length: > 0 } s && s.Contains('/') ? s : null, "the running trial's step");
            var later = Until(browser, () => StepOfRunningTrial() is var s && s != first ? s : null, "the running trial's step changing");
            Assert.True(int.Parse(later.Split('/')[0]) > int.Parse(first.Split('/')[0]), $"{first} then {later}");
            Until(browser, () => browser.FindElements(By.CssSelector("svg#loss polyline.loss-curve")).Count > 0 ? "" : null, "a loss curve");
            Until(browser, () => browser.FindElement(By.CssSelector("#trials thead th.task")).Text == "old bio-choice acc" ? "" : null, "the task suite's column");
            var accuracy = Until(browser, () => browser.FindElement(By.CssSelector("#trials tbody tr[data-trial^='frozen-'] td.task")).Text is var t && t != "—" ? t : null,
                                 "the frozen base's task accuracy");
            Assert.Matches(@"^[01]\.\d{3} ± \d\.\d{3}$", accuracy);
            // The scores during training are drawn from the API's points (step, retention, acquisition): numbers, not NaN.
            var scores = Until(browser, () => browser.FindElements(By.CssSelector("polyline.score-curve")).Select(p => p.GetAttribute("points"))
                .FirstOrDefault(p => p.Split(' ').Length >= 2), "a curve of scores during training");
            Assert.DoesNotContain("NaN", scores);
            // Read in one script, between two refreshes of the page, so that the table and the chart are from the same data.
            var counts = (System.Collections.ObjectModel.ReadOnlyCollection<object>)((IJavaScriptExecutor)browser).ExecuteScript(
                "return [document.querySelectorAll('#trials tbody td.state-completed').length, " +
                "document.querySelectorAll('svg#scatter circle.trial-point').length, " +
                "[...document.querySelectorAll('#trainers tbody td')].some(td => td.textContent.startsWith('preserve-'))];")!;
            Assert.True(Convert.ToInt64(counts[0]) >= 1);                               // the frozen base completes at once
            Assert.Equal(Convert.ToInt64(counts[0]), Convert.ToInt64(counts[1]));     // one point per completed trial
            Assert.True((bool)counts[2], "the trainer's current trial is shown");
        }
        finally
        {
            if (!run.HasExited) SendSignal(run.Id, 2);
            run.WaitForExit(TimeSpan.FromMinutes(1));
        }
    }

    /// <summary>
    /// The seed of a real two-process cluster serves the whole cluster: its members from Akka.Cluster, the worker's
    /// trainer with its trial, every sweep and its trials — in a real browser — and, bound beyond loopback, only with the
    /// bearer token (the health probes excepted).
    /// </summary>
    [Fact]
    public void A_seeds_dashboard_shows_the_cluster_its_workers_trials_and_sweeps_and_wants_the_token_beyond_loopback()
    {
        using var dir = new TempDirectory();
        string shared = dir.Combine("shared"), seedAddress = $"127.0.0.1:{FreePorts.Next()}", token = "a-long-enough-bearer-token-0123";
        var tokenFile = dir.Combine("token");
        File.WriteAllText(tokenFile, token + "\n");
        var file = dir.Combine("cluster.hocon");
        File.WriteAllText(file, SweepProcessTestsSweep.Tiny.Replace("name = recover", "name = watched").Replace("steps = 60", "steps = 60000"));

        using var seed = new NodeProcess("seed", "seed", "--bind", seedAddress, "--data-dir", shared, "--http", "0.0.0.0:0", "--http-token-file", tokenFile);
        var endpointLine = seed.WaitFor(l => l.StartsWith("Operators' endpoint: ", StringComparison.Ordinal), TimeSpan.FromMinutes(3), "the seed's endpoint");
        var port = int.Parse(endpointLine.Split(' ')[2].Split(':')[^1]);
        var url = $"http://127.0.0.1:{port}";
        using var worker = new NodeProcess("worker", "worker", "--seeds", seedAddress, "--data-dir", shared, "--threads", "1", "--http", "127.0.0.1:0");
        var workerAddress = worker.WaitFor(l => l.StartsWith("Worker ", StringComparison.Ordinal), TimeSpan.FromMinutes(3), "worker up").Split(' ')[1];
        using var client = new NodeProcess("run --cluster", "run", "--cluster", seedAddress, file, "--plain");
        client.WaitFor(l => l.Contains(" checkpoint at step ", StringComparison.Ordinal), TimeSpan.FromMinutes(10), "a first checkpoint");

        using (var http = new HttpClient())
        {
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, http.GetAsync(url + "/api/sweeps").Result.StatusCode);
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, http.GetAsync(url + "/metrics").Result.StatusCode);
            Assert.Equal(System.Net.HttpStatusCode.OK, http.GetAsync(url + "/health/live").Result.StatusCode);
            var ready = http.GetAsync(url + "/health/ready").Result;
            Assert.True(ready.IsSuccessStatusCode, ready.Content.ReadAsStringAsync().Result);
            // The token is never taken from a URL, and a wrong one does not sign in.
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, http.GetAsync(url + "/api/sweeps?token=" + token).Result.StatusCode);
            var wrong = http.PostAsync(url + "/login", new FormUrlEncodedContent([new("token", "not-the-token-0123456789")])).Result;
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, wrong.StatusCode);
            Assert.False(wrong.Headers.Contains("Set-Cookie"));
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
            Assert.Contains("\"watched\"", http.GetStringAsync(url + "/api/sweeps").Result);
            var metrics = http.GetStringAsync(url + "/metrics").Result;
            Assert.Contains("scale_cluster_members", metrics);
            Assert.Contains("scale_trials", metrics);
        }

        using var browser = Browser(dir.Combine("profile"));
        browser.Manage().Timeouts().AsynchronousJavaScript = TimeSpan.FromSeconds(30);
        // Signed in once through the page's form: the endpoint answers with an HttpOnly session cookie.
        browser.Navigate().GoToUrl(url + "/");
        Until(browser, () => browser.FindElement(By.Id("login")).Displayed ? "" : null, "the sign-in form");
        browser.FindElement(By.Id("login-token")).SendKeys(token);
        browser.FindElement(By.Id("login-submit")).Click();
        var session = Until(browser, () => browser.Manage().Cookies.GetCookieNamed("scale_session"), "the session cookie");
        Assert.True(session.IsHttpOnly);
        Assert.DoesNotContain(token, browser.Url);
        Until(browser, () => browser.FindElements(By.CssSelector("#members .member-status")).Count(e => e.Text == "up") == 2 ? "" : null, "two members up");
        Until(browser, () => browser.FindElements(By.CssSelector("#sweeps tbody tr[data-sweep='watched']")).Count == 1 ? "" : null, "the sweep in the list");
        Until(browser, () => browser.FindElements(By.CssSelector("#trials tbody tr")).Count == 4 ? "" : null, "the sweep's 4 trials");
        var trainer = Until(browser, () => browser.FindElements(By.CssSelector("#trainers tbody tr"))
            .FirstOrDefault(r => r.Text.Contains(workerAddress) && !r.FindElement(By.CssSelector("td.trainer-trial")).Text.Contains("idle"))?.Text,
            "the worker's trainer with its trial");
        Assert.Contains("cpu", trainer);
        Until(browser, () => browser.FindElement(By.Id("sweep-name")).Text.Contains("watched") ? "" : null, "the sweep's name");
    }
}
