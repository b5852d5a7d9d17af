using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

public class SearchSpaceTests
{
    [Fact]
    public void A_grid_expands_to_every_combination_with_the_fixed_settings()
    {
        var space = new SearchSpace
        {
            Fixed = new Dictionary<string, string> { ["steps"] = "300" },
            Grid = new Dictionary<string, IReadOnlyList<string>> { ["heads_up"] = ["1", "2"], ["lr"] = ["1e-3", "2e-3", "4e-3"] },
        };

        var trials = space.Expand();

        Assert.Equal(6, trials.Count);
        Assert.Equal(6, trials.Select(t => $"{t["heads_up"]}/{t["lr"]}").Distinct().Count());
        Assert.All(trials, t => Assert.Equal("300", t["steps"]));
    }

    [Fact]
    public void Random_axes_are_reproducible_from_the_seed_and_stay_in_range()
    {
        var space = new SearchSpace
        {
            Grid = new Dictionary<string, IReadOnlyList<string>> { ["method"] = ["adapt", "route"] },
            Random = [new RandomAxis("penalty", 1e-4, 1e-1, Log: true), new RandomAxis("ffn_up", 16, 256, Integer: true)],
            Samples = 5,
            Seed = 42,
        };

        var first = space.Expand();
        var second = space.Expand();
        var other = (space with { Seed = 43 }).Expand();

        Assert.Equal(10, first.Count);
        Assert.Equal(first.Select(t => string.Join(",", t.OrderBy(p => p.Key))), second.Select(t => string.Join(",", t.OrderBy(p => p.Key))));
        Assert.NotEqual(first[0]["penalty"], other[0]["penalty"]);
        Assert.All(first, t => Assert.InRange(double.Parse(t["penalty"], System.Globalization.CultureInfo.InvariantCulture), 1e-4, 1e-1));
        Assert.All(first, t => Assert.InRange(int.Parse(t["ffn_up"]), 16, 256));
    }

    [Fact]
    public void Trial_ids_are_stable_and_depend_on_every_setting()
    {
        var a = SearchSpace.TrialId("route", new Dictionary<string, string> { ["lr"] = "2e-3", ["penalty"] = "0.01" });
        var same = SearchSpace.TrialId("route", new Dictionary<string, string> { ["penalty"] = "0.01", ["lr"] = "2e-3" });
        var other = SearchSpace.TrialId("route", new Dictionary<string, string> { ["lr"] = "2e-3", ["penalty"] = "0.02" });

        Assert.Equal(a, same);
        Assert.NotEqual(a, other);
        Assert.StartsWith("route-", a);
    }

    [Theory]
    [InlineData("empty-grid", "has no values")]
    [InlineData("bad-range", "above max")]
    [InlineData("log-zero", "min > 0")]
    [InlineData("clash", "set more than once")]
    public void Impossible_search_spaces_are_rejected_with_the_reason(string fault, string message)
    {
        var space = fault switch
        {
            "empty-grid" => new SearchSpace { Grid = new Dictionary<string, IReadOnlyList<string>> { ["lr"] = [] } },
            "bad-range" => new SearchSpace { Random = [new RandomAxis("lr", 2, 1)] },
            "log-zero" => new SearchSpace { Random = [new RandomAxis("lr", 0, 1, Log: true)] },
            _ => new SearchSpace
            {
                Fixed = new Dictionary<string, string> { ["lr"] = "1" },
                Grid = new Dictionary<string, IReadOnlyList<string>> { ["lr"] = ["2"] },
            },
        };

        Assert.Contains(message, Assert.Throws<ArgumentException>(() => space.Expand()).Message);
    }
}
