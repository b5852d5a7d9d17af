using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;
using Scale.Actors.Reports;

namespace Scale.Host.Cluster;

/// <summary>
/// `scale run --cluster SEEDS SWEEP` and `scale status --cluster SEEDS`: a client of a running cluster submits a
/// sweep (resolved here, so workers need none of this machine's files) and follows it until it is finished.
/// </summary>
internal static class ClusterRun
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);

    public static IReadOnlyList<string> Seeds(string seeds)
    {
        var list = seeds.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        return list.Count > 0 ? list : throw new ArgumentException("--cluster needs the address of at least one seed (host:port).");
    }

    public static async Task<int> SubmitAndFollow(SweepDefinition sweep, IReadOnlyList<string> seeds, string bindHost, Actors.Cluster.RemotingTls? tls,
                                                  bool plain, CancellationToken cancellation)
    {
        await using var connection = ClusterClientConnection.Connect(seeds, bindHost, tls);
        object answer;
        try
        {
            answer = await Retry(() => connection.AskAsync(new SubmitSweep(sweep.Name, SweepDefinitionJson.Write(sweep)), AskTimeout, cancellation), seeds, cancellation);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{sweep.Source}: {e.Message}");
        }
        Console.WriteLine(answer is Accepted { EventsPersisted: 0 }
            ? $"Sweep {sweep.Name} is already on the cluster; following it."
            : $"Sweep {sweep.Name} submitted to the cluster ({sweep.Trials.Count} trials); following it. Ctrl+C stops following, not the sweep.");
        SweepState? before = null;
        var started = DateTime.UtcNow;
        while (!cancellation.IsCancellationRequested)
        {
            SweepState state;
            try
            {
                state = (SweepState)await connection.AskAsync(new ToSweep(sweep.Name, GetSweepState.Instance), AskTimeout, cancellation);
            }
            catch (Exception e) when (e is Akka.Actor.AskTimeoutException or TimeoutException)
            {
                Console.WriteLine("(no answer from the coordinator: it may be moving to another seed; asking again)");
                continue;
            }
            catch (OperationCanceledException)
            {
                break;
            }
            foreach (var line in SweepChanges.Lines(before, state)) Console.WriteLine(line);
            Console.Out.Flush();
            before = state;
            if (!state.Finished && await CancelledOnCluster(connection, sweep.Name, cancellation))
            {
                Console.WriteLine($"Sweep {sweep.Name} was cancelled on the cluster: {SweepReport.Counts(state)}.");
                return 1;
            }
            if (state.Finished)
            {
                if (plain) Console.WriteLine(SweepReport.Csv(state).TrimEnd());
                else Spectre.Console.AnsiConsole.Write(SweepReport.Table(state));
                Console.WriteLine($"Sweep {sweep.Name}: {SweepReport.Counts(state)}. Followed for {(DateTime.UtcNow - started).TotalSeconds:0.0} s.");
                return 0;
            }
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(2), cancellation);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        Console.WriteLine($"Stopped following; sweep {sweep.Name} goes on in the cluster (`scale status --cluster {string.Join(',', seeds)} {sweep.Name}`).");
        return 130;
    }

    public static async Task<int> Cancel(string sweepName, IReadOnlyList<string> seeds, string bindHost, Actors.Cluster.RemotingTls? tls, CancellationToken cancellation)
    {
        await using var connection = ClusterClientConnection.Connect(seeds, bindHost, tls);
        var answer = await Retry(() => connection.AskAsync(new CancelSweep(sweepName), AskTimeout, cancellation), seeds, cancellation);
        Console.WriteLine(answer is Accepted { EventsPersisted: 0 }
            ? $"Sweep {sweepName} was already cancelled."
            : $"Sweep {sweepName} cancelled: no trainer gets its trials any more, and its running trials stop at their next report. Its results stay readable (`scale status --cluster {string.Join(',', seeds)} {sweepName}`).");
        return 0;
    }

    public static async Task<int> Status(string? sweepName, IReadOnlyList<string> seeds, string bindHost, Actors.Cluster.RemotingTls? tls, CancellationToken cancellation)
    {
        await using var connection = ClusterClientConnection.Connect(seeds, bindHost, tls);
        var first = await Retry(() => connection.AskAsync(GetSweeps.Instance, AskTimeout, cancellation), seeds, cancellation);   // the first contact: the first page
        var list = await SweepPages.AllAsync(get => get.After is null ? Task.FromResult(first) : connection.AskAsync(get, AskTimeout, cancellation));
        var names = sweepName is null ? list.Sweeps.Select(s => s.SweepId).ToList() : [sweepName];
        if (names.Count == 0) Console.WriteLine("No sweeps were submitted to this cluster.");
        int unanswered = 0;
        foreach (var name in names)
        {
            if (list.Quarantined.TryGetValue(name, out var why))
            {
                Console.WriteLine($"{name}: quarantined, does not run: {why}");
                continue;
            }
            bool cancelled = list.Cancelled.Contains(name);
            SweepState state;
            try
            {
                state = (SweepState)await connection.AskAsync(new ToSweep(name, GetSweepState.Instance), AskTimeout, cancellation);
            }
            catch (Exception e) when (e is Akka.Actor.AskTimeoutException or TimeoutException)
            {
                // One coordinator that does not answer (moving to another seed, its journal not answering) is said, and the others shown.
                Console.WriteLine($"{name}: no answer from its coordinator within {AskTimeout.TotalSeconds:0} s (it may be moving to another seed, or its journal may not answer); ask again.");
                unanswered++;
                continue;
            }
            Console.WriteLine($"{name}: {SweepReport.Counts(state)}; {(state.Finished ? "finished" : cancelled ? "cancelled" : "in progress")}");
            if (list.Unprepared.TryGetValue(name, out var unprepared) && !state.Finished && !cancelled)
                Console.WriteLine($"  a worker could not prepare it: {unprepared}");
            if (sweepName is null) continue;
            foreach (var t in state.Order.Select(id => state.Trials[id])) Console.WriteLine(SweepChanges.StatusLine(t, DateTime.UtcNow));
        }
        return unanswered == 0 ? 0 : 1;
    }

    /// <summary>Whether the cluster's sweep list says <paramref name="sweep"/> was cancelled (false when the manager does not answer now).</summary>
    private static async Task<bool> CancelledOnCluster(ClusterClientConnection connection, string sweep, CancellationToken cancellation)
    {
        try
        {
            return (await SweepPages.AllAsync(get => connection.AskAsync(get, AskTimeout, cancellation))).Cancelled.Contains(sweep);
        }
        catch (Exception e) when (e is Akka.Actor.AskTimeoutException or TimeoutException)
        {
            return false;
        }
    }

    /// <summary>The first contact can take a few tries while the client finds a receptionist.</summary>
    private static async Task<object> Retry(Func<Task<object>> ask, IReadOnlyList<string> seeds, CancellationToken cancellation)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return await ask();
            }
            catch (Exception e) when (e is Akka.Actor.AskTimeoutException or TimeoutException && attempt < 3)
            {
                Console.WriteLine($"(no answer from {string.Join(", ", seeds)} yet; trying again)");
            }
            catch (Exception e) when (e is Akka.Actor.AskTimeoutException or TimeoutException)
            {
                throw new Commands.CommandFailedException($"no answer from the cluster's seeds {string.Join(", ", seeds)}: is a seed running there, and does the cluster use TLS (then give --tls-certificate)?", e, 3);
            }
            cancellation.ThrowIfCancellationRequested();
        }
    }
}
