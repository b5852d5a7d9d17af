using System.Text.Json;
using System.Text.Json.Serialization;
using Scale.Model.Training;
using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Checkpoints;

/// <summary>What a trial checkpoint records besides tensors.</summary>
internal sealed record TrialCheckpointState
{
    [JsonPropertyName("format_version")] public int FormatVersion { get; init; } = TrialCheckpoint.FormatVersion;
    [JsonPropertyName("step")] public long Step { get; init; }
    /// <summary>Where the data stream stands, so a resumed trial sees the same batches.</summary>
    [JsonPropertyName("data_position")] public long DataPosition { get; init; }
    [JsonPropertyName("trainable_parameters")] public long TrainableParameters { get; init; }
    /// <summary>Loss of the step that ended at this checkpoint, so a trial resumed at its end reports the same final loss.</summary>
    [JsonPropertyName("last_loss")] public double? LastLoss { get; init; }
    /// <summary>The attempt that wrote it (sweep trials; none for an experiment's methods).</summary>
    [JsonPropertyName("attempt")] public int? Attempt { get; init; }
    /// <summary>The matrix products' kernel path it was trained on (<see cref="Native.MklKernels"/>): a resume continues bit for bit only on the same path.</summary>
    [JsonPropertyName("kernels")] public string? Kernels { get; init; }
    /// <summary>The precision its products ran in: fp32, or bf16 (mixed precision); null in checkpoints from before it was recorded (fp32).</summary>
    [JsonPropertyName("precision")] public string? Precision { get; init; }
}

/// <summary>
/// A trial's checkpoint: only the trainable tensors (the frozen base is not repeated), the optimiser's
/// moments, the step, the RNG state and the data position. A directory written atomically:
/// <c>trainable.safetensors</c>, <c>optimizer.safetensors</c>, <c>state.json</c>.
/// </summary>
internal static class TrialCheckpoint
{
    public const int FormatVersion = 1;
    public const string TrainableFile = "trainable.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string StateFile = "state.json";
    private const string RngTensor = "rng.cpu";

    /// <summary>
    /// Writes a checkpoint of <paramref name="session"/> to <paramref name="directory"/>: staged beside it under a name of the
    /// attempt's own, every file flushed to the disk, then renamed into place (the directory flushed after), so a reader
    /// sees the old checkpoint or the whole new one, also after a power cut. With <paramref name="rotateTo"/>, the checkpoint
    /// it replaces is kept there. With <paramref name="fence"/>, the rename happens only while the fence's attempt owns the
    /// trial (<see cref="CheckpointFencedException"/> otherwise, and nothing of the current owner's is touched).
    /// </summary>
    public static void Save(string directory, TrainingSession session, long dataPosition, double? lastLoss = null,
                            CheckpointFence? fence = null, string? rotateTo = null)
    {
        var full = Path.GetFullPath(directory);
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var staging = CheckpointFence.StagingFor(full, fence?.Attempt ?? 0);
        Directory.CreateDirectory(staging);
        try
        {
            SafetensorsFile.Save(Path.Combine(staging, TrainableFile),
                session.Trainable.ToDictionary(p => p.Name, p => (Tensor)p.Parameter));
            var optimizerState = session.Optimizer.StateTensors();
            optimizerState[RngTensor] = random.get_rng_state();
            SafetensorsFile.Save(Path.Combine(staging, OptimizerFile), optimizerState);
            var state = new TrialCheckpointState
            {
                Step = session.Step, DataPosition = dataPosition, TrainableParameters = session.Model.TrainableParameterCount(),
                LastLoss = lastLoss is { } loss && double.IsFinite(loss) ? loss : null, Attempt = fence?.Attempt,
                Kernels = Native.MklKernels.Current.Id,
                Precision = Autocast.Type is null ? "fp32" : "bf16",
            };
            var statePath = Path.Combine(staging, StateFile);
            File.WriteAllText(statePath, JsonSerializer.Serialize(state, new JsonSerializerOptions { WriteIndented = true }));
            Durable.SyncFile(statePath);
            Durable.SyncDirectory(staging);
            void Publish()
            {
                var replaced = full + ".old";
                if (rotateTo is not null && Directory.Exists(full))
                {
                    if (Directory.Exists(rotateTo)) Directory.Delete(rotateTo, recursive: true);
                    Directory.Move(full, rotateTo);
                }
                if (Directory.Exists(replaced)) Directory.Delete(replaced, recursive: true);
                if (Directory.Exists(full)) Directory.Move(full, replaced);
                Directory.Move(staging, full);
                Durable.SyncDirectory(parent);
                if (Directory.Exists(replaced)) Directory.Delete(replaced, recursive: true);
            }
            if (fence is null) Publish();
            else fence.Publish(Publish, $"{Path.GetFileName(full)} at step {session.Step}");
        }
        catch (IOException) when (fence?.SupersededBy() is { } owner)
        {
            // A later attempt claimed the trial while this one was staging, and removed the staging directory with it.
            throw new CheckpointFencedException(fence.TrialDirectory, fence.Attempt, owner);
        }
        finally
        {
            try
            {
                if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            }
            catch (DirectoryNotFoundException)
            {
                // Removed by a later attempt's claim at the same moment: nothing is left to remove.
            }
        }
    }

    /// <summary>
    /// A checkpoint's state.json, read and checked (format version), after checking that its tensor files are there: what
    /// can be told about a checkpoint without loading a model (a command checks it before it prepares anything).
    /// </summary>
    public static TrialCheckpointState ReadState(string directory)
    {
        if (!Directory.Exists(directory)) throw new InvalidCheckpointException($"{directory}: no such checkpoint directory.");
        var statePath = Path.Combine(directory, StateFile);
        if (!File.Exists(statePath)) throw new InvalidCheckpointException($"{directory}: not a trial checkpoint ({StateFile} is missing).");
        TrialCheckpointState state;
        try
        {
            state = JsonSerializer.Deserialize<TrialCheckpointState>(File.ReadAllText(statePath))
                    ?? throw new JsonException("empty");
        }
        catch (JsonException e)
        {
            throw new InvalidCheckpointException($"{statePath}: unreadable ({e.Message}).");
        }
        if (state.FormatVersion != FormatVersion)
            throw new InvalidCheckpointException($"{statePath}: format version {state.FormatVersion}, this Scale reads {FormatVersion}.");
        foreach (var file in new[] { TrainableFile, OptimizerFile })
            if (!File.Exists(Path.Combine(directory, file))) throw new InvalidCheckpointException($"{directory}: not a whole trial checkpoint ({file} is missing).");
        return state;
    }

    /// <summary>
    /// Loads only the trainable tensors of a checkpoint into <paramref name="model"/> (for evaluation: no optimiser,
    /// no RNG). Shapes and names are checked before anything is copied.
    /// </summary>
    public static void LoadWeights(string directory, CausalLM model)
    {
        var path = Path.Combine(directory, TrainableFile);
        if (!File.Exists(path)) throw new InvalidCheckpointException($"{directory}: not a trial checkpoint ({TrainableFile} is missing).");
        LoadTrainable(path, model, $"trial checkpoint {directory}");
    }

    /// <summary>Copies a safetensors file of trainable tensors, by name, into <paramref name="model"/>'s trainable parameters, checked first.</summary>
    internal static void LoadTrainable(string path, CausalLM model, string what)
    {
        var trainable = SafetensorsFile.Load(path);
        try
        {
            var parameters = model.TrainableParameters();
            TensorLayout.CheckShapes(parameters.ToDictionary(p => p.Name, p => p.Parameter.shape),
                trainable.ToDictionary(t => t.Key, t => t.Value.shape), what);
            using (no_grad())
            {
                foreach (var (name, parameter) in parameters) parameter.copy_(trainable[name]);
            }
        }
        finally
        {
            foreach (var t in trainable.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Restores a session's trainable tensors, optimiser state and RNG from <paramref name="directory"/>.
    /// Everything is checked before anything is changed: a checkpoint of another method or shape, or a
    /// damaged file, is rejected by name and the session is left as it was.
    /// </summary>
    public static TrialCheckpointState Load(string directory, TrainingSession session)
    {
        var state = ReadState(directory);

        var trainable = SafetensorsFile.Load(Path.Combine(directory, TrainableFile));
        var optimizer = SafetensorsFile.Load(Path.Combine(directory, OptimizerFile));
        try
        {
            TensorLayout.CheckShapes(session.Trainable.ToDictionary(p => p.Name, p => p.Parameter.shape),
                trainable.ToDictionary(t => t.Key, t => t.Value.shape), $"trial checkpoint {directory}");
            var expectedMoments = session.Trainable
                .SelectMany(p => new[] { (p.Name + ".exp_avg", p.Parameter.shape), (p.Name + ".exp_avg_sq", p.Parameter.shape) })
                .ToDictionary(e => e.Item1, e => e.Item2);
            if (!optimizer.TryGetValue(RngTensor, out var rng))
                throw new InvalidCheckpointException($"{directory}: the optimiser file has no RNG state.");
            TensorLayout.CheckShapes(expectedMoments,
                optimizer.Where(t => t.Key != RngTensor).ToDictionary(t => t.Key, t => t.Value.shape), $"optimiser state {directory}");

            using (no_grad())
            {
                foreach (var (name, parameter) in session.Trainable) parameter.copy_(trainable[name]);
            }
            session.Optimizer.LoadState(optimizer, state.Step);
            random.set_rng_state(rng);
            return state;
        }
        finally
        {
            foreach (var t in trainable.Values.Concat(optimizer.Values)) t.Dispose();
        }
    }
}
