namespace Scale.Model.Experiments;

/// <summary>
/// How a model scores after continual pre-training, in one metric (<see cref="ScoreMetric"/>): retention on the old
/// data, acquisition on the new, and forgetting against the base (docs/method.md defines the three), with first-token
/// accuracy on the old and new prompts where the metric has it (biography recall). Every result type holds one.
/// </summary>
internal sealed record Scores(double Retention, double Acquisition, double Forgetting)
{
    public double? RetentionFirstToken { get; init; }
    public double? AcquisitionFirstToken { get; init; }
    /// <summary>The experiment's task suites scored on the same weights (<see cref="Evaluation.SuitesSpec"/>); null: none asked.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<Evaluation.TaskResult>? Tasks { get; init; }
}

/// <summary>Which way a score is better: the one name for it (a metric's, a scheduler's `mode`).</summary>
internal enum Direction
{
    HigherIsBetter,
    LowerIsBetter,
}

internal static class DirectionExtensions
{
    /// <summary>How much better <paramref name="a"/> is than <paramref name="b"/> (positive: better).</summary>
    public static double Gain(this Direction direction, double a, double b) => direction == Direction.LowerIsBetter ? b - a : a - b;

    /// <summary>Whether <paramref name="score"/> is at least as good as <paramref name="than"/>.</summary>
    public static bool AtLeast(this Direction direction, double score, double than) => direction.Gain(score, than) >= 0;
}
