using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Scale.Actors.Sweeps;

/// <summary>A hyper-parameter drawn at random: uniform in [Min, Max], or log-uniform when <see cref="Log"/> is set.</summary>
internal sealed record RandomAxis(string Name, double Min, double Max, bool Log = false, bool Integer = false)
{
    public RandomAxis Validate()
    {
        if (string.IsNullOrWhiteSpace(Name)) throw new ArgumentException("A random axis needs a name.");
        if (!(Min <= Max)) throw new ArgumentException($"{Name}: min {Min} is above max {Max}.");
        if (Log && !(Min > 0)) throw new ArgumentException($"{Name}: a log-uniform range needs min > 0, got {Min}.");
        return this;
    }

    public string Draw(Random rng)
    {
        double u = rng.NextDouble();
        double value = Log ? Math.Exp(Math.Log(Min) + u * (Math.Log(Max) - Math.Log(Min))) : Min + u * (Max - Min);
        return Integer ? ((long)Math.Round(value)).ToString(CultureInfo.InvariantCulture) : value.ToString("R", CultureInfo.InvariantCulture);
    }
}

/// <summary>
/// A sweep's search space: fixed settings, a grid (every combination of the listed values) and random axes
/// (a number of samples drawn from a seed, crossed with the grid). Expansion is deterministic, and each trial's
/// id is a hash of its settings, so the same sweep file always yields the same trials with the same ids.
/// </summary>
internal sealed record SearchSpace
{
    public IReadOnlyDictionary<string, string> Fixed { get; init; } = new Dictionary<string, string>();
    public IReadOnlyDictionary<string, IReadOnlyList<string>> Grid { get; init; } = new Dictionary<string, IReadOnlyList<string>>();
    public IReadOnlyList<RandomAxis> Random { get; init; } = [];
    public int Samples { get; init; } = 1;
    public long Seed { get; init; }

    /// <summary>How many points <see cref="Expand"/> gives, computed without expanding (saturates at long.MaxValue).</summary>
    public long Size
    {
        get
        {
            long size = Random.Count > 0 ? Math.Max(1, Samples) : 1;
            foreach (var values in Grid.Values)
                size = values.Count == 0 ? 0 : size > long.MaxValue / values.Count ? long.MaxValue : size * values.Count;
            return size;
        }
    }

    public IReadOnlyList<IReadOnlyDictionary<string, string>> Expand()
    {
        foreach (var (name, values) in Grid)
            if (values.Count == 0) throw new ArgumentException($"Grid axis '{name}' has no values.");
        foreach (var axis in Random) axis.Validate();
        if (Random.Count > 0 && Samples < 1) throw new ArgumentException($"samples must be at least 1, got {Samples}.");
        var clash = Grid.Keys.Concat(Random.Select(r => r.Name)).Concat(Fixed.Keys).GroupBy(k => k).FirstOrDefault(g => g.Count() > 1);
        if (clash is not null) throw new ArgumentException($"Parameter '{clash.Key}' is set more than once (fixed, grid or random).");

        IEnumerable<Dictionary<string, string>> combinations = [new Dictionary<string, string>(Fixed)];
        foreach (var (name, values) in Grid.OrderBy(g => g.Key, StringComparer.Ordinal))
            combinations = combinations.SelectMany(c => values.Select(v => new Dictionary<string, string>(c) { [name] = v })).ToList();
        if (Random.Count == 0) return combinations.ToList();
        var rng = new Random(unchecked((int)(Seed * 2_147_483_629L + 11)));
        var draws = Enumerable.Range(0, Samples)
            .Select(_ => Random.ToDictionary(axis => axis.Name, axis => axis.Draw(rng))).ToList();
        return combinations.SelectMany(c => draws.Select(d => (IReadOnlyDictionary<string, string>)c.Concat(d).ToDictionary())).ToList();
    }

    /// <summary>A short, stable id from the method and the sorted settings.</summary>
    public static string TrialId(string method, IReadOnlyDictionary<string, string> parameters)
    {
        var text = method + "|" + string.Join("|", parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));
        return $"{method}-{Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..10].ToLowerInvariant()}";
    }
}
