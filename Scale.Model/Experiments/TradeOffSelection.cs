namespace Scale.Model.Experiments;

/// <summary>One point a method reached: a trial's scores at a step of its training (null: its final scores).</summary>
internal sealed record TradeOffPoint(string Group, string Trial, long? Step, double Retention, double Acquisition, double Forgetting);

/// <summary>A method's chosen point by <see cref="TradeOffSelection"/>, the rule that chose it, and its whole front when none met the bound.</summary>
internal sealed record TradeOffChoice(string Group, TradeOffPoint Chosen, string Rule, IReadOnlyList<TradeOffPoint> Front);

/// <summary>
/// Each method at its best trade-off, by Route's own criterion (docs/experiments.md): among every point the method reached
/// — each of its trials (rates, widths) at each scored step, so the best step counts — the most acquisition with
/// forgetting within the bound (recall: forgetting ≤ bound; perplexity: the old text's perplexity ≤ (1 + bound) × the
/// base's). Where no point qualifies, the method's whole Pareto front is kept, and the point of least forgetting among
/// those that reach half of the method's best gain in acquisition over the base (for perplexity, half in log-perplexity).
/// </summary>
internal static class TradeOffSelection
{
    public static IReadOnlyList<TradeOffChoice> Choose(IEnumerable<TradeOffPoint> points, string metric, double bound, double baseOld, double baseNew)
    {
        bool perplexity = ScoreMetric.LowerIsBetter(metric);
        double allowed = perplexity ? bound * baseOld : bound;
        // Gain in acquisition over the base: recall's difference, perplexity's log ratio.
        double Gain(double acquisition) => perplexity ? Math.Log(baseNew / acquisition) : acquisition - baseNew;
        var choices = new List<TradeOffChoice>();
        foreach (var group in points.GroupBy(p => p.Group))
        {
            var all = group.ToList();
            var within = all.Where(p => p.Forgetting <= allowed).ToList();
            if (within.Count > 0)
            {
                var best = within.MaxBy(p => Gain(p.Acquisition))!;
                choices.Add(new TradeOffChoice(group.Key, best, perplexity
                    ? $"most acquisition with the old perplexity ≤ {1 + bound:0.###}× the base's"
                    : $"most acquisition with forgetting ≤ {bound}", []));
                continue;
            }
            double top = all.Max(p => Gain(p.Acquisition));
            var front = ScoreMetric.ParetoFront(all, metric, p => p.Retention, p => p.Acquisition);
            if (top <= 0)
            {
                // No point gains anything over the base: half of the best gain is no threshold.
                choices.Add(new TradeOffChoice(group.Key, all.MinBy(p => p.Forgetting)!,
                    "no point within the bound and none above the base's acquisition: least forgetting", front));
                continue;
            }
            var half = all.Where(p => Gain(p.Acquisition) >= top / 2).ToList();
            choices.Add(new TradeOffChoice(group.Key, half.MinBy(p => p.Forgetting)!,
                $"no point within the bound: least forgetting among points with at least half the best gain in acquisition", front));
        }
        return choices;
    }
}
