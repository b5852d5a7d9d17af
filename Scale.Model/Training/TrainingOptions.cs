namespace Scale.Model.Training;

/// <summary>Optimisation settings of one training run.</summary>
public sealed record TrainingOptions
{
    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 2e-3;

    /// <summary>Linear warm-up steps from 0 to the peak.</summary>
    public int WarmupSteps { get; init; } = 20;

    /// <summary>Steps of the whole run; the cosine decays from the peak to <see cref="MinLearningRateRatio"/>·peak at this step.</summary>
    public int TotalSteps { get; init; } = 250;

    public double MinLearningRateRatio { get; init; } = 0.1;

    public double WeightDecay { get; init; } = 0.01;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Global gradient-norm clip; 0 or less disables clipping.</summary>
    public double GradientClip { get; init; } = 1.0;

    /// <summary>Micro-batches whose gradients add up to one optimiser step.</summary>
    public int AccumulationSteps { get; init; } = 1;

    /// <summary>
    /// Learning-rate multipliers per parameter group: "base" (weights of full fine-tuning and depth copies),
    /// "expansion" (W21, W22, E_u, H_u, new norm gains), "w12", "router", "lora". New blocks start from scratch
    /// and often want a higher rate than a fine-tuned weight (DESIGN.md §1). Missing groups get 1.
    /// </summary>
    public IReadOnlyDictionary<string, double> GroupLearningRates { get; init; } = new Dictionary<string, double>();

    public TrainingOptions Validate()
    {
        void Require(bool ok, string field, string reason)
        {
            if (!ok) throw new ArgumentException($"Invalid training options: {field} {reason}.");
        }
        Require(LearningRate > 0 && double.IsFinite(LearningRate), "learning_rate", $"must be positive, got {LearningRate}");
        Require(WarmupSteps >= 0, "warmup_steps", $"must be zero or more, got {WarmupSteps}");
        Require(TotalSteps >= 1, "total_steps", $"must be at least 1, got {TotalSteps}");
        Require(MinLearningRateRatio is >= 0 and <= 1, "min_lr_ratio", $"must be within [0, 1], got {MinLearningRateRatio}");
        Require(WeightDecay >= 0, "weight_decay", $"must be zero or more, got {WeightDecay}");
        Require(Beta1 is >= 0 and < 1, "beta1", $"must be within [0, 1), got {Beta1}");
        Require(Beta2 is >= 0 and < 1, "beta2", $"must be within [0, 1), got {Beta2}");
        Require(AccumulationSteps >= 1, "accumulation_steps", $"must be at least 1, got {AccumulationSteps}");
        foreach (var (group, multiplier) in GroupLearningRates)
        {
            Require(ParameterGroups.Names.Contains(group), "group_learning_rates",
                $"names an unknown group '{group}'; groups are {string.Join(", ", ParameterGroups.Names)}");
            Require(multiplier >= 0 && double.IsFinite(multiplier), "group_learning_rates", $"{group} must be zero or more, got {multiplier}");
        }
        return this;
    }

    /// <summary>Warm-up, then cosine decay to MinLearningRateRatio·peak; step counts from 0.</summary>
    public double LearningRateAt(long step)
    {
        if (step < WarmupSteps) return LearningRate * (step + 1) / WarmupSteps;
        double span = Math.Max(1, TotalSteps - WarmupSteps);
        double progress = Math.Clamp((step - WarmupSteps) / span, 0, 1);
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * progress));
        return LearningRate * (MinLearningRateRatio + (1 - MinLearningRateRatio) * cosine);
    }
}

/// <summary>Which learning-rate group a trainable tensor belongs to, from its name.</summary>
public static class ParameterGroups
{
    public static readonly IReadOnlyList<string> Names = ["base", "expansion", "w12", "router", "lora"];

    public static string Of(string parameterName)
    {
        var leaf = parameterName[(parameterName.LastIndexOf('.') + 1)..];
        if (leaf == "w12") return "w12";
        if (parameterName.Contains("router")) return "router";
        if (leaf is "w21" or "w22" or "weight_u") return "expansion";
        if (leaf.StartsWith("lora_", StringComparison.Ordinal)) return "lora";
        return "base";
    }
}
