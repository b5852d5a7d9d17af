using System.Globalization;
using Scale.Model.Experiments;

namespace Scale.Actors.Sweeps;

/// <summary>
/// A sweep's early-stopping scheduler (the file's `scheduler` block): ASHA, asynchronous successive halving (Li et al.,
/// "A System for Massively Parallel Hyperparameter Tuning", 2020), in its stopping form. Rung k is step
/// grace·ηᵏ of a trial's training. When a trial's score during training reaches a rung, it is compared with every score
/// recorded at that rung so far (its own included): in the best 1/η it is promoted and trains on; otherwise it is stopped
/// there. Each decision is an event (<see cref="TrialPromoted"/>, <see cref="TrialStopped"/>), so a resumed sweep keeps them.
/// </summary>
internal sealed record SchedulerSpec
{
    public const string AshaKind = "asha";

    /// <summary>The scores a scheduler can rank on: those journaled during training (<see cref="ScorePoint"/>).</summary>
    public static readonly IReadOnlyList<string> Metrics = ["acquisition", "retention", "forgetting", "acquisition-first-token", "retention-first-token"];

    public string Kind { get; init; } = AshaKind;
    /// <summary>One of <see cref="Metrics"/>.</summary>
    public required string Metric { get; init; }
    /// <summary>Whether higher scores are better ("max") or lower ("min").</summary>
    public required string Mode { get; init; }
    /// <summary>The first rung's step: no trial is stopped before it.</summary>
    public required int GraceSteps { get; init; }
    /// <summary>η: each rung keeps the best 1/η and lies η times further into training than the one before.</summary>
    public int Reduction { get; init; } = 3;

    /// <summary>The <see cref="Mode"/> as the one direction type ("max": higher is better).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public Direction Direction => Mode == "max" ? Direction.HigherIsBetter : Direction.LowerIsBetter;

    /// <summary>The rung step <paramref name="step"/> is (0, 1, …), or null when it is none.</summary>
    public int? RungAt(long step)
    {
        long at = GraceSteps;
        for (int rung = 0; at <= step; rung++, at *= Reduction)
            if (at == step) return rung;
        return null;
    }

    /// <summary>The rungs' steps below <paramref name="steps"/> (a rung at a trial's last step decides nothing).</summary>
    public IReadOnlyList<long> RungSteps(long steps)
    {
        var rungs = new List<long>();
        for (long at = GraceSteps; at < steps; at *= Reduction) rungs.Add(at);
        return rungs;
    }

    /// <summary>The point's score on <see cref="Metric"/> (null where the point has none, e.g. first-token accuracy of a perplexity sweep).</summary>
    public double? ScoreOf(ScorePoint point) => Metric switch
    {
        "acquisition" => point.Scores.Acquisition,
        "retention" => point.Scores.Retention,
        "forgetting" => point.Scores.Forgetting,
        "acquisition-first-token" => point.Scores.AcquisitionFirstToken,
        "retention-first-token" => point.Scores.RetentionFirstToken,
        _ => null,
    };

    /// <summary>
    /// The score a trial must reach at a rung to be promoted, given every score recorded there (its own included): the
    /// (1 − 1/η) quantile for "max", the 1/η quantile for "min", interpolated linearly between recorded scores. With one
    /// score recorded the cutoff is that score: the first trial at a rung is always promoted (ASHA's asynchronous trade-off).
    /// </summary>
    public double Cutoff(IReadOnlyList<double> recorded)
    {
        var sorted = recorded.Order().ToList();
        double q = Direction == Direction.HigherIsBetter ? 1 - 1.0 / Reduction : 1.0 / Reduction;
        double position = q * (sorted.Count - 1);
        int below = (int)Math.Floor(position);
        int above = Math.Min(below + 1, sorted.Count - 1);
        return sorted[below] + (position - below) * (sorted[above] - sorted[below]);
    }

    /// <summary>Whether <paramref name="score"/> earns promotion against <paramref name="cutoff"/> (a tie is promoted).</summary>
    public bool Promotes(double score, double cutoff) => Direction.AtLeast(score, cutoff);

    public override string ToString()
        => string.Create(CultureInfo.InvariantCulture, $"{Kind} on {Metric} ({Mode}), grace {GraceSteps} steps, reduction {Reduction}");
}

/// <summary>A scheduler's decision for a trial at a rung: the trial's score there, the cutoff it met or missed, and the outcome.</summary>
internal sealed record RungDecision(int Rung, long Step, double Score, double Cutoff, bool Promoted);
