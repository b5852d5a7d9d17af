using System.Diagnostics;
using System.Text.Json.Serialization;
using Scale.Model.Baselines;
using Scale.Model.Training;
using Scale.Model.Transformer;
using TorchSharp;
using static TorchSharp.torch;

namespace Scale.Model.Bench;

/// <summary>The bench configuration: the defaults of the external PyTorch peer (docs/bench.md), so figures compare side by side.</summary>
internal sealed record BenchSettings
{
    public ModelConfig Model { get; init; } = new()
    {
        VocabSize = 512, HiddenSize = 256, NumLayers = 4, NumHeads = 4, IntermediateSize = 688,
    };
    public int HeadsUp { get; init; } = 1;
    public int FfnUp { get; init; } = 172;
    public int DepthEvery { get; init; } = 2;
    public LoraSpec Lora { get; init; } = new() { Rank = 8, TargetModules = ["q_proj", "k_proj", "v_proj", "o_proj"] };
    public int Batch { get; init; } = 16;
    public int SequenceLength { get; init; } = 128;
    public int Steps { get; init; } = 20;
    public int WarmupSteps { get; init; } = 3;
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Null for fp32; bf16 for mixed precision, the frozen base resident in bf16, as a trainer runs it.</summary>
    public ScalarType? Precision { get; init; }

    /// <summary>The bench's frozen base on <paramref name="device"/>, resident in the bench's precision.</summary>
    public Decoder Base(Device device)
    {
        var full = Decoder.Create(Model, seed: 0).Freeze().On(device);
        if (Precision is not { } reduced) return full;
        using (full) return full.Reduced(reduced);
    }

    public static readonly IReadOnlyList<string> Methods = ["full", "preserve", "adapt", "route", "depth", "lora"];

    /// <summary>Clipping off and a constant rate: the peer does neither, and the bench measures the step itself.</summary>
    public TrainingOptions Options => new()
    {
        LearningRate = LearningRate, WarmupSteps = 0, MinLearningRateRatio = 1, GradientClip = 0, TotalSteps = Steps + WarmupSteps,
    };

    /// <summary>The one random batch (B, T + 1) every step trains on, as the peer's.</summary>
    public Tensor FixedBatch(Device device)
        => randint(0, Model.VocabSize, [Batch, SequenceLength + 1], generator: new Generator(0)).to(device);

    public MethodSpec MethodFor(string name)
    {
        if (name == "frozen") throw new ArgumentException("The frozen base does not train; nothing to bench.");
        string Text(double v) => v.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var experiment = new Experiments.ExperimentSpec
        {
            Model = Model, VocabSize = Model.VocabSize,
            Settings = new Dictionary<string, string>
            {
                ["heads_up"] = Text(HeadsUp), ["ffn_up"] = Text(FfnUp), ["depth_every"] = Text(DepthEvery),
                ["lora_rank"] = Text(Lora.Rank), ["lora_alpha"] = Text(Lora.Alpha), ["lora_targets"] = string.Join(",", Lora.TargetModules),
            },
        };
        return Experiments.TrialPlanner.Plan(experiment, name).Method;
    }
}

/// <summary>One method's throughput on the bench configuration.</summary>
internal sealed record BenchResult
{
    [JsonPropertyName("method")] public required string Method { get; init; }
    /// <summary>Batch × sequence tokens over the median step time.</summary>
    [JsonPropertyName("tokens_per_second")] public double TokensPerSecond { get; init; }
    /// <summary>Median wall time of one optimiser step (forward, backward, AdamW).</summary>
    [JsonPropertyName("step_ms")] public double StepMs { get; init; }
    [JsonPropertyName("params")] public long Params { get; init; }
    [JsonPropertyName("trainable_params")] public long TrainableParams { get; init; }
    [JsonPropertyName("peak_rss_mb")] public double PeakRssMb { get; init; }
    [JsonPropertyName("threads")] public int Threads { get; init; }
    [JsonPropertyName("steps")] public int Steps { get; init; }
    [JsonPropertyName("final_loss")] public double FinalLoss { get; init; }
    [JsonPropertyName("device")] public string Device { get; init; } = "cpu";
    /// <summary>Trials trained together per step (1: one trial), and whether they shared the base's forward in lock-step.</summary>
    [JsonPropertyName("members")] public int Members { get; init; } = 1;
    [JsonPropertyName("lock_step")] public bool LockStep { get; init; }
    /// <summary>Independent runs (processes) this result is the median of.</summary>
    [JsonPropertyName("rounds")] public int Rounds { get; init; } = 1;
    /// <summary>The matrix products' kernel path (<see cref="Native.MklKernels"/>): which MKL code ran.</summary>
    [JsonPropertyName("kernels")] public string Kernels { get; init; } = Native.MklKernels.Current.Id;
    /// <summary>How idle OpenMP threads waited (<see cref="Devices.OpenMpWaiting"/>): "passive" by default, "spin N" under GOMP_SPINCOUNT=N.</summary>
    [JsonPropertyName("omp_waiting")] public string OmpWaiting { get; init; } = Devices.OpenMpWaiting;
    /// <summary>fp32, or bf16 (mixed precision with the base resident in bf16).</summary>
    [JsonPropertyName("precision")] public string Precision { get; init; } = "fp32";
    /// <summary>The step's matrix-product FLOPs per token (<see cref="StepFlops"/>), all trials of a group together, and what that makes per second.</summary>
    [JsonPropertyName("flops_per_token")] public double FlopsPerToken { get; init; }
    [JsonPropertyName("gflops_per_second")] public double GflopsPerSecond => FlopsPerToken * TokensPerSecond / 1e9;
}

/// <summary>
/// Trains one method for a fixed number of steps (forward, backward, AdamW) on one fixed random batch, as the
/// PyTorch peer does, and measures it. Peak memory is the process's high-water mark, so each method should
/// run in a process of its own (the `scale bench` command does that).
/// </summary>
internal static class ThroughputBench
{
    public static BenchResult Run(string method, BenchSettings settings, Device device, Action<int>? onStep = null)
    {
        torch.manual_seed(0);
        using var cast = Autocast.Enter(settings.Precision);
        var baseModel = settings.Base(device);
        var model = settings.MethodFor(method).Build(baseModel, seed: 1);
        var options = settings.Options;
        using var session = new TrainingSession(model, options);
        using var batch = settings.FixedBatch(device);
        StepResult last = default;
        for (int i = 0; i < settings.WarmupSteps; i++) last = session.TrainStep([batch]);
        // The median step, not the mean: on a shared machine a few steps are slowed by neighbours.
        var stepMs = new List<double>();
        for (int i = 0; i < settings.Steps; i++)
        {
            var clock = Stopwatch.StartNew();
            last = session.TrainStep([batch]);
            if (device.type == DeviceType.CUDA) cuda.synchronize();
            stepMs.Add(clock.Elapsed.TotalMilliseconds);
            onStep?.Invoke(i + 1);
        }
        double median = Median(stepMs);
        return new BenchResult
        {
            Method = method,
            TokensPerSecond = settings.Batch * settings.SequenceLength / (median / 1000),
            StepMs = median,
            Params = model.ParameterCount(),
            TrainableParams = model.TrainableParameterCount(),
            PeakRssMb = ProcessMemory.PeakResidentMegabytes(),
            Threads = torch.get_num_threads(),
            Steps = settings.Steps,
            FinalLoss = last.Loss,
            Device = device.ToString(),
            Precision = settings.Precision is null ? "fp32" : "bf16",
            FlopsPerToken = StepFlops.PerToken(method, settings).Total,
        };
    }

    /// <summary>
    /// <paramref name="members"/> trials of one method (seeds 1…K) on one base and one batch. With <paramref name="lockStep"/>
    /// they train as a sweep's trainer runs a lock-step group: each on a thread of its own, taking turns on the device's whole
    /// thread budget, the base's forward computed once per step by the first to reach it (<see cref="LockStepGroups"/>). Without it they train one after another on the whole budget, each computing its own
    /// forward. The step time is the group's: wall time per step of all K.
    /// </summary>
    public static BenchResult RunGroup(string method, BenchSettings settings, Device device, int members, bool lockStep, Action<int>? onStep = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(members, 1);
        torch.manual_seed(0);
        using var cast = Autocast.Enter(settings.Precision);
        var baseModel = settings.Base(device);
        var models = Enumerable.Range(0, members).Select(i => settings.MethodFor(method).Build(baseModel, seed: 1 + i)).ToList();
        int depth = models.Max(m => m.TraceDepth);
        if (lockStep && models.Any(m => m.TraceDepth == 0))
            throw new ArgumentException($"{method} takes nothing from the base's forward (its W12 starts in the first block): it cannot train in lock-step.");
        var options = settings.Options;
        var sessions = models.Select(m => new TrainingSession(m, options)).ToList();
        using var batch = settings.FixedBatch(device);
        int threads = torch.get_num_threads();
        var losses = new double[members];
        double stepMs;
        if (lockStep)
        {
            var groups = new LockStepGroups { TraceThreads = threads };
            torch.set_num_threads(Math.Max(1, threads / members));
            using var timed = new Barrier(members + 1);
            var workers = sessions.Select((session, i) => new Thread(() =>
            {
                using var memberCast = Autocast.Enter(settings.Precision);   // a thread's setting
                using var member = groups.Join(baseModel, "bench", depth, 0);
                for (int step = 0; step < settings.WarmupSteps + settings.Steps; step++)
                {
                    if (step == settings.WarmupSteps) timed.SignalAndWait();   // every member warmed up: the clock starts
                    long at = step;
                    losses[i] = member.TrainStep(session, batch, at).Loss;
                    member.Stepped(step);
                    if (i == 0 && step >= settings.WarmupSteps) onStep?.Invoke(step - settings.WarmupSteps + 1);
                }
            })).ToList();
            workers.ForEach(w => w.Start());
            timed.SignalAndWait();
            var clock = Stopwatch.StartNew();
            workers.ForEach(w => w.Join());
            if (device.type == DeviceType.CUDA) cuda.synchronize();
            stepMs = clock.Elapsed.TotalMilliseconds / settings.Steps;   // the mean: the members' steps overlap, so there is no step of the group to time
            torch.set_num_threads(threads);
        }
        else
        {
            void Step()
            {
                for (int i = 0; i < members; i++) losses[i] = sessions[i].TrainStep([batch]).Loss;
            }
            for (int i = 0; i < settings.WarmupSteps; i++) Step();
            var times = new List<double>();
            for (int i = 0; i < settings.Steps; i++)
            {
                var clock = Stopwatch.StartNew();
                Step();
                if (device.type == DeviceType.CUDA) cuda.synchronize();
                times.Add(clock.Elapsed.TotalMilliseconds);
                onStep?.Invoke(i + 1);
            }
            stepMs = Median(times);
        }
        foreach (var session in sessions) session.Dispose();
        return new BenchResult
        {
            Method = method,
            TokensPerSecond = members * settings.Batch * settings.SequenceLength / (stepMs / 1000),
            StepMs = stepMs,
            Params = models.Sum(m => m.ParameterCount()) - (members - 1) * baseModel.ParameterCount(),
            TrainableParams = models.Sum(m => m.TrainableParameterCount()),
            PeakRssMb = ProcessMemory.PeakResidentMegabytes(),
            Threads = threads,
            Steps = settings.Steps,
            FinalLoss = losses[^1],
            Device = device.ToString(),
            Members = members, LockStep = lockStep, Precision = settings.Precision is null ? "fp32" : "bf16",
            // Per token of one trial: a group in lock-step computes the base's forward once for all its members.
            FlopsPerToken = lockStep
                ? StepFlops.PerToken(method, settings, baseForwardShared: true).Total + StepFlops.BaseForward(settings).Total / members
                : StepFlops.PerToken(method, settings).Total,
        };
    }

    /// <summary>
    /// The machine's matrix-product peak as this process reaches it: an n×n by n×n product in <paramref name="type"/> (fp32, or
    /// bf16 with fp32 accumulation), the best of five after two warm-ups, in GFLOP/s (2n³ operations a product).
    /// </summary>
    public static BenchResult Peak(ScalarType type, int n = 2048)
    {
        using var scope = NewDisposeScope();
        var a = randn(n, n).to(type);
        var b = randn(n, n).to(type);
        for (int i = 0; i < 2; i++) torch.matmul(a, b).Dispose();
        double best = double.MaxValue;
        for (int i = 0; i < 5; i++)
        {
            var clock = Stopwatch.StartNew();
            torch.matmul(a, b).Dispose();
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return new BenchResult
        {
            Method = "peak", StepMs = best * 1000, Threads = torch.get_num_threads(), Steps = 5,
            Precision = type == ScalarType.Float32 ? "fp32" : "bf16", FlopsPerToken = 2.0 * n * n * n, TokensPerSecond = 1 / best,
        };
    }

    public static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToList();
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}

/// <summary>The process's memory high-water mark (VmHWM on Linux; the peak working set elsewhere).</summary>
internal static class ProcessMemory
{
    public static double PeakResidentMegabytes()
    {
        const string status = "/proc/self/status";
        if (File.Exists(status))
            foreach (var line in File.ReadLines(status))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        return Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024.0);
    }
}
