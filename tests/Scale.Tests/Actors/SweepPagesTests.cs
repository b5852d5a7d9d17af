using Scale.Actors.Cluster;

namespace Scale.Tests.Actors;

/// <summary>The sweep manager's list comes in pages bounded in count and size, and a reader gets every sweep once.</summary>
public class SweepPagesTests
{
    private static (List<string> Order, Dictionary<string, SubmittedSweep> Sweeps) Submitted(int count, Func<int, int> size)
    {
        var order = Enumerable.Range(1, count).Select(i => $"s{i}").ToList();
        return (order, order.Select((id, i) => new SubmittedSweep(id, new string('x', size(i)))).ToDictionary(s => s.SweepId));
    }

    [Fact]
    public async Task Pages_hold_at_most_the_limit_and_the_size_bound_and_together_every_sweep_in_order()
    {
        var (order, sweeps) = Submitted(25, i => i == 7 ? 5_000 : 100);   // one large definition
        var quarantined = new Dictionary<string, string> { ["s3"] = "damaged", ["s20"] = "damaged" };
        var unprepared = new Dictionary<string, string> { ["s12"] = "w1: no corpus" };
        var cancelled = new HashSet<string> { "s5", "s21" };
        SweepList Page(GetSweeps get) => SweepPages.Page(get, order, sweeps, quarantined, unprepared, cancelled, pageChars: 1_000);

        var first = Page(GetSweeps.Instance with { Limit = 10 });
        Assert.Equal(["s1", "s2", "s3", "s4", "s5", "s6", "s7"], first.Sweeps.Select(s => s.SweepId));   // s8 is 5,000 characters: next page
        Assert.Equal("s7", first.Next);
        Assert.Equal(["s3"], first.Quarantined.Keys);   // each page says what it holds
        Assert.Equal(["s5"], first.Cancelled);
        var large = Page(new GetSweeps { After = "s7", Limit = 10 });
        Assert.Equal(["s8"], large.Sweeps.Select(s => s.SweepId));   // alone, over the bound: a page always holds one

        var pages = 0;
        var all = await SweepPages.AllAsync(get => { pages++; return Task.FromResult<object>(Page(get with { Limit = 4 })); });
        Assert.Equal(order, all.Sweeps.Select(s => s.SweepId));
        Assert.True(pages >= 7, $"{pages} pages");
        Assert.Equal(["s20", "s3"], all.Quarantined.Keys.Order());
        Assert.Equal(["s12"], all.Unprepared.Keys);
        Assert.Equal(["s5", "s21"], all.Cancelled);
        Assert.Null(Page(new GetSweeps { After = "s25" }).Next);
        Assert.Empty(Page(new GetSweeps { After = "s25" }).Sweeps);
    }

    [Fact]
    public async Task A_limit_out_of_range_or_an_unknown_sweep_to_page_after_is_refused()
    {
        var (order, sweeps) = Submitted(3, _ => 10);
        SweepList Page(GetSweeps get) => SweepPages.Page(get, order, sweeps, new Dictionary<string, string>(), new Dictionary<string, string>(), new HashSet<string>());

        Assert.Contains("1 to 1000", Assert.Throws<ArgumentException>(() => Page(new GetSweeps { Limit = 0 })).Message);
        Assert.Throws<ArgumentException>(() => Page(new GetSweeps { Limit = 1_000_000 }));
        Assert.Contains("no sweep 'gone'", Assert.Throws<ArgumentException>(() => Page(new GetSweeps { After = "gone" })).Message);
        Assert.Empty(Page(new GetSweeps()).Quarantined);
        Assert.Empty((await SweepPages.AllAsync(_ => Task.FromResult<object>(new SweepList([])))).Sweeps);   // no sweeps: one empty page
    }
}
