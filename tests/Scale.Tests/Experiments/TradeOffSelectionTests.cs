using Scale.Model.Experiments;

namespace Scale.Tests.Experiments;

public class TradeOffSelectionTests
{
    private static TradeOffPoint P(string group, long? step, double retention, double acquisition, double forgetting)
        => new(group, group + "-trial", step, retention, acquisition, forgetting);

    [Fact]
    public void A_method_takes_its_most_acquiring_point_within_the_forgetting_bound_at_any_step()
    {
        var points = new[]
        {
            P("full", 50, 0.97, 0.40, 0.01), P("full", 100, 0.96, 0.55, 0.02), P("full", null, 0.20, 0.95, 0.78),
            P("lora", 50, 0.98, 0.10, 0.00), P("lora", null, 0.975, 0.12, 0.005),
        };

        var choices = TradeOffSelection.Choose(points, ScoreMetric.Recall, 0.02, baseOld: 0.98, baseNew: 0.0).ToDictionary(c => c.Group);

        Assert.Equal((100L, 0.55), (choices["full"].Chosen.Step!.Value, choices["full"].Chosen.Acquisition));   // the best step, not the end
        Assert.Equal(0.12, choices["lora"].Chosen.Acquisition);
        Assert.Empty(choices["full"].Front);
    }

    [Fact]
    public void Without_a_point_within_the_bound_a_method_keeps_its_front_and_the_least_forgetting_point_with_half_its_best_gain()
    {
        var points = new[] { P("depth", 50, 0.70, 0.20, 0.28), P("depth", 100, 0.50, 0.50, 0.48), P("depth", null, 0.10, 0.90, 0.88) };

        var choice = Assert.Single(TradeOffSelection.Choose(points, ScoreMetric.Recall, 0.02, baseOld: 0.98, baseNew: 0.0));

        Assert.Equal(100L, choice.Chosen.Step);                // 0.50 ≥ 0.90 / 2, and forgets less than the end
        Assert.Equal(3, choice.Front.Count);
        Assert.Contains("no point within the bound", choice.Rule);
    }

    [Fact]
    public void A_method_that_gains_nothing_over_the_base_anywhere_takes_its_least_forgetting_point()
    {
        // Every point below the base's acquisition (a routed LoRA that learnt nothing at one rate, measured on `bio`).
        var points = new[] { P("lora", null, 0.08, 0.000, 0.90), P("lora", 50, 0.40, 0.001, 0.58) };

        var choice = Assert.Single(TradeOffSelection.Choose(points, ScoreMetric.Recall, 0.02, baseOld: 0.98, baseNew: 0.004));

        Assert.Equal(50L, choice.Chosen.Step);
        Assert.Contains("none above the base's acquisition", choice.Rule);
    }

    [Fact]
    public void On_perplexity_the_bound_is_a_share_of_the_base_and_gains_are_in_log_perplexity()
    {
        // Base: old 50, new 1000. 2% of 50 is 1 point of perplexity.
        var points = new[] { P("adapt", 50, 50.8, 300, 0.8), P("adapt", null, 60, 100, 10), P("full", 100, 70, 200, 20), P("full", null, 90, 60, 40) };

        var choices = TradeOffSelection.Choose(points, ScoreMetric.Perplexity, 0.02, baseOld: 50, baseNew: 1000).ToDictionary(c => c.Group);

        Assert.Equal(300, choices["adapt"].Chosen.Acquisition);
        // full: best gain ln(1000/60); half of it is reached by perplexity ≤ √(1000·60) ≈ 245, so step 100 (200) qualifies and forgets least.
        Assert.Equal(100L, choices["full"].Chosen.Step);
    }
}
