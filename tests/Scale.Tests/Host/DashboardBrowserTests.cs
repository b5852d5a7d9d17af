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

    /// <summary>
    /// Checks <paramref name="condition"/> after each refresh of the page (it dispatches "scale-refreshed" every 2 s)
    /// until it holds: the test waits for the page's own event, not for time.
    /// </summary>
    /// <summary>How long the page may take to show a change: generous, as a loaded 2-core machine (the other test classes run
    /// beside this one) once took 4 minutes to reach the sweep's first checkpoint.</summary>
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(6);

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
        File.WriteAllText(file, SweepProcessTestsSweep.Tiny.Replace("steps = 60", "steps = 60000"));
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
            Assert.Contains("recover", browser.FindElement(By.Id("sweep-name")).Text);
            Assert.Equal("up", browser.FindElement(By.CssSelector("#members .member-status")).Text);
            string StepOfRunningTrial() => browser.FindElement(By.CssSelector("#trials tbody tr[data-trial^='preserve-'] td.step")).Text;
            var first = Until(browser, () => StepOfRunningTrial() is { Length: > 0 } s && s.Contains('/') ? s : null, "the running trial's step");
            var later = Until(browser, () => StepOfRunningTrial() is var s && s != first ? s : null, "the running trial's step changing");
            Assert.True(int.Parse(later.Split('/')[0]) > int.Parse(first.Split('/')[0]), $"{first} then {later}");
            Until(browser, () => browser.FindElements(By.CssSelector("svg#loss polyline.loss-curve")).Count > 0 ? "" : null, "a loss curve");
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
}
