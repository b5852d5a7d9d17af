namespace Scale.Model.Training;

/// <summary>Optimisation settings of one training run.</summary>
internal sealed record TrainingOptions
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
    /// Learning-rate multipliers per parameter group. New blocks start from scratch and often want a higher rate
    /// than a fine-tuned weight (docs/method.md).
    /// </summary>
    public GroupRates Rates { get; init; } = new();

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
        foreach (var group in Enum.GetValues<ParameterGroup>())
            Require(Rates.Of(group) >= 0 && double.IsFinite(Rates.Of(group)), "rates", $"{group} must be zero or more, got {Rates.Of(group)}");
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

/// <summary>The learning-rate groups of trainable tensors.</summary>
internal enum ParameterGroup { Base, Expansion, W12, Lora }

/// <summary>Learning-rate multipliers per parameter group; every group starts at 1 (the phase's rate).</summary>
internal sealed record GroupRates
{
    /// <summary>Trained base weights (full fine-tuning, depth copies).</summary>
    public double Base { get; init; } = 1;
    /// <summary>SCALE's W21, W22, E_u, H_u and new norm gains.</summary>
    public double Expansion { get; init; } = 1;
    public double W12 { get; init; } = 1;
    public double Lora { get; init; } = 1;

    public double Of(ParameterGroup group) => group switch
    {
        ParameterGroup.Base => Base, ParameterGroup.Expansion => Expansion, ParameterGroup.W12 => W12, ParameterGroup.Lora => Lora,
        _ => throw new ArgumentOutOfRangeException(nameof(group)),
    };
}

/// <summary>
/// Which learning-rate group a trainable tensor belongs to, from its checkpoint name: the tensor's own name (its
/// last segment) for SCALE's and LoRA's blocks; everything else is a
/// base weight. Exact segments, never substrings.
/// </summary>
internal static class ParameterGroups
{
    public static ParameterGroup Of(string parameterName)
    {
        var segments = parameterName.Split('.');
        return segments[^1] switch
        {
            "w12" => ParameterGroup.W12,
            "w21" or "w22" or "weight_u" => ParameterGroup.Expansion,
            "lora_A" or "lora_B" => ParameterGroup.Lora,
            _ => ParameterGroup.Base,
        };
    }
}
