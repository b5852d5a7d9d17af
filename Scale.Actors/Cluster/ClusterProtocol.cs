using System.Text.Json;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Cluster;

/// <summary>
/// A sweep handed to the cluster: the resolved definition as JSON (experiment included), so that every worker
/// plans the same trials without reading the submitter's files.
/// </summary>
internal sealed record SubmitSweep(string SweepId, string Definition);

/// <summary>A message for one sweep's coordinator (a sweep command, or <see cref="GetSweepState"/>), routed by the sweep manager.</summary>
internal sealed record ToSweep(string SweepId, object Message);

/// <summary>
/// Asks the sweep manager for one page of the sweeps submitted to the cluster, oldest first: those after
/// <see cref="After"/> (null: from the oldest), at most <see cref="Limit"/> of them and about <see cref="PageChars"/>
/// characters of definitions (always at least one sweep), so that no answer outgrows a remoting frame however many
/// sweeps were submitted. <see cref="SweepPages.AllAsync"/> reads every page.
/// </summary>
internal sealed record GetSweeps
{
    /// <summary>The first page.</summary>
    public static readonly GetSweeps Instance = new();

    public string? After { get; init; }
    public int Limit { get; init; } = DefaultLimit;

    public const int DefaultLimit = 100;
    public const int MaxLimit = 1000;
    /// <summary>Definitions' characters a page holds at most (beyond its first sweep): well inside the 32 MiB frame.</summary>
    public const int PageChars = 4 * 1024 * 1024;
}

/// <summary>One submitted sweep: its id and resolved definition (JSON).</summary>
internal sealed record SubmittedSweep(string SweepId, string Definition);

/// <summary>The sweeps submitted to the cluster, oldest first.</summary>
internal sealed record SweepList(IReadOnlyList<SubmittedSweep> Sweeps)
{
    /// <summary>Sweeps that do not run, by id, with the reason (a journal that cannot be recovered, a definition that no longer validates).</summary>
    public IReadOnlyDictionary<string, string> Quarantined { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// Sweeps some worker could not prepare, by id, with the last worker and reason it reported (since the manager
    /// started). They still run where they can: the reason may be one worker's (a data folder it cannot see).
    /// </summary>
    public IReadOnlyDictionary<string, string> Unprepared { get; init; } = new Dictionary<string, string>();

    /// <summary>Sweeps cancelled by an operator (`scale cancel`): no trainer gets their trials any more.</summary>
    public IReadOnlyList<string> Cancelled { get; init; } = [];

    /// <summary>The <see cref="GetSweeps.After"/> of the next page; null on the last page. (The lists above cover this page's sweeps.)</summary>
    public string? Next { get; init; }
}

/// <summary>Pages of the sweep list: the manager's side (<see cref="Page"/>) and a reader's (<see cref="AllAsync"/>).</summary>
internal static class SweepPages
{
    /// <summary>
    /// The page <paramref name="get"/> asks for, of the sweeps in submission <paramref name="order"/>; an out-of-range limit
    /// or an unknown <see cref="GetSweeps.After"/> is refused (ArgumentException).
    /// </summary>
    public static SweepList Page(GetSweeps get, IReadOnlyList<string> order, IReadOnlyDictionary<string, SubmittedSweep> sweeps,
                                 IReadOnlyDictionary<string, string> quarantined, IReadOnlyDictionary<string, string> unprepared,
                                 IReadOnlySet<string> cancelled, int pageChars = GetSweeps.PageChars)
    {
        if (get.Limit is < 1 or > GetSweeps.MaxLimit)
            throw new ArgumentException($"a page of sweeps holds 1 to {GetSweeps.MaxLimit}, asked for {get.Limit}.");
        int start = 0;
        if (get.After is not null)
        {
            int at = Enumerable.Range(0, order.Count).FirstOrDefault(i => order[i] == get.After, -1);
            start = at >= 0 ? at + 1 : throw new ArgumentException($"no sweep '{get.After}' to page after was submitted to this cluster.");
        }
        var page = new List<SubmittedSweep>();
        long chars = 0;
        for (int i = start; i < order.Count && page.Count < get.Limit; i++)
        {
            var sweep = sweeps[order[i]];
            if (page.Count > 0 && chars + sweep.Definition.Length > pageChars) break;
            page.Add(sweep);
            chars += sweep.Definition.Length;
        }
        var ids = page.Select(s => s.SweepId).ToHashSet();
        if (start == 0) ids.UnionWith(quarantined.Keys.Where(key => !sweeps.ContainsKey(key)));   // damaged rows that name no sweep: on the first page
        return new SweepList(page)
        {
            Quarantined = quarantined.Where(q => ids.Contains(q.Key)).ToDictionary(),
            Unprepared = unprepared.Where(u => ids.Contains(u.Key)).ToDictionary(),
            Cancelled = page.Select(s => s.SweepId).Where(cancelled.Contains).ToList(),
            Next = start + page.Count < order.Count ? page[^1].SweepId : null,
        };
    }

    /// <summary>Every page from the oldest, as one list (<paramref name="ask"/> sends a <see cref="GetSweeps"/> and returns the answer).</summary>
    public static async Task<SweepList> AllAsync(Func<GetSweeps, Task<object>> ask)
    {
        var sweeps = new List<SubmittedSweep>();
        var quarantined = new Dictionary<string, string>();
        var unprepared = new Dictionary<string, string>();
        var cancelled = new List<string>();
        string? after = null;
        do
        {
            var page = (SweepList)await ask(new GetSweeps { After = after });
            if (page.Next is not null && (page.Sweeps.Count == 0 || page.Next == after))
                throw new InvalidOperationException("the sweep manager's pages do not move forward.");
            sweeps.AddRange(page.Sweeps);
            foreach (var (id, why) in page.Quarantined) quarantined[id] = why;
            foreach (var (id, why) in page.Unprepared) unprepared[id] = why;
            cancelled.AddRange(page.Cancelled);
            after = page.Next;
        }
        while (after is not null);
        return new SweepList(sweeps) { Quarantined = quarantined, Unprepared = unprepared, Cancelled = cancelled };
    }
}

/// <summary>An operator's `scale cancel`: the sweep leaves the work queue for good (journaled); its running trials stop.</summary>
internal sealed record CancelSweep(string SweepId);

/// <summary>A worker could not prepare a sweep (its base, its data): it goes on with the others and says why.</summary>
internal sealed record ReportSweepUnprepared(string SweepId, string Worker, string Reason);

/// <summary>What the sweep manager journals (under its own persistence id): not a sweep's event.</summary>
internal interface IManagerEvent;

/// <summary>The sweep manager's persisted event: a sweep was submitted (its coordinator journals the rest).</summary>
internal sealed record SweepSubmitted(string SweepId, string Definition) : IManagerEvent;

/// <summary>The sweep manager's persisted event: a sweep was cancelled (its own journal is kept as it was).</summary>
internal sealed record SweepCancelled(string SweepId) : IManagerEvent;

/// <summary>
/// A row of the sweep manager's journal that could not be read (damaged, or a schema it does not know), offered in its
/// place so that recovery goes on: the sweep it names, if it still names one, is quarantined (a cancellation still
/// cancels); a row that names none is reported on its own.
/// </summary>
internal sealed record UnreadableManagerEvent(string Manifest, string? SweepId, string Reason);

/// <summary>
/// The directories a cluster reads a submitted sweep's data from (text and shard folders, an imported base, task files), as its
/// operator configured them (`scale seed --data-roots`; the data directory by default): a submission that names a
/// path outside them is refused, so that nobody who can submit a sweep makes the workers read (and report on) any file
/// they can see.
/// </summary>
internal static class DataRoots
{
    /// <summary>Throws ArgumentException naming the first path of <paramref name="sweep"/> outside <paramref name="roots"/> (symbolic links resolved).</summary>
    public static void Check(SweepDefinition sweep, IReadOnlyList<string> roots)
    {
        if (sweep.Experiment is null) return;   // refused by Validate
        var suites = sweep.Experiment.Suites is { } given
            ? given.Old.Select(t => ("old", t)).Concat(given.New.Select(t => ("new", t)))
                .SelectMany(e => new[] { ($"suites.{e.Item1} '{e.t.Name}' file", e.t.File), ($"suites.{e.Item1} '{e.t.Name}' fewshot", e.t.FewShotFile) })
            : [];
        var paths = new[] { ("old.folder", sweep.Experiment.Old?.Folder), ("new.folder", sweep.Experiment.New?.Folder), ("base", sweep.Experiment.BaseModel) }.Concat(suites);
        foreach (var (what, path) in paths)
        {
            if (path is null) continue;
            if (!Path.IsPathRooted(path)) throw new ArgumentException($"{what} '{path}' must be an absolute path on the cluster.");
            if (!roots.Any(root => Trainers.SweepPaths.IsOrContains(root, path)))
                throw new ArgumentException($"{what} '{path}' lies outside the directories this cluster reads data from ({string.Join(", ", roots)}); " +
                                            "an operator adds one with `scale seed --data-roots`.");
        }
    }
}

/// <summary>A resolved sweep definition as JSON and back: what a submitter sends and a worker plans from.</summary>
internal static class SweepDefinitionJson
{
    private static readonly JsonSerializerOptions Options = new()
    {
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static string Write(SweepDefinition sweep) => JsonSerializer.Serialize(sweep, Options);

    /// <summary>
    /// The definition in <paramref name="json"/>, checked; with <paramref name="dataRoots"/>, its paths are checked against
    /// them first, before validation reads any file it names (shard indexes, task files).
    /// </summary>
    public static SweepDefinition Read(string json, IReadOnlyList<string>? dataRoots = null)
    {
        SweepDefinition? sweep;
        try
        {
            sweep = JsonSerializer.Deserialize<SweepDefinition>(json, Options);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"not a sweep definition: {e.Message}", e);
        }
        if (sweep is null) throw new ArgumentException("not a sweep definition: empty");
        if (dataRoots is not null) DataRoots.Check(sweep, dataRoots);
        return sweep.Validate();
    }
}
