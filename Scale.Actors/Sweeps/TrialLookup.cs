using Scale.Actors.Trainers;
using Scale.Model;
using Scale.Model.Experiments;

namespace Scale.Actors.Sweeps;

/// <summary>A trial of a sweep file, planned, with the checkpoint a command asked for (`scale evaluate`, `scale export`).</summary>
internal sealed record TrialLookup(SweepDefinition Sweep, TrialSpec Trial, TrialPlan Plan, string CheckpointDirectory)
{
    /// <summary>
    /// <paramref name="checkpoint"/> is latest, previous, final (the trial's own, under the data directory) or a directory.
    /// An unknown trial is refused naming the command that lists them.
    /// </summary>
    public static TrialLookup Find(string sweepFile, string trialId, string checkpoint, string dataDirectory)
    {
        var sweep = SweepFiles.Load(sweepFile);
        var trial = sweep.Trials.FirstOrDefault(t => t.Id == trialId)
            ?? throw new ArgumentException($"Sweep '{sweep.Name}' has no trial '{trialId}'; `scale results {sweep.Name}` lists them.");
        var directory = checkpoint is "latest" or "previous" or "final"
            ? Path.Combine(SweepPaths.SweepDirectory(dataDirectory, sweep.Name), "trials", trial.Id, checkpoint)
            : checkpoint;
        return new TrialLookup(sweep, trial, sweep.PlanFor(trial), directory);
    }

    /// <summary>The checkpoint to read, checked to exist; null for the frozen base, which has none.</summary>
    public string? ExistingCheckpoint(TrialPlan plan)
    {
        if (plan.Method.Kind == MethodKind.Frozen) return null;
        if (!Directory.Exists(CheckpointDirectory)) throw new ArgumentException($"No checkpoint {CheckpointDirectory}: the trial has not written it (yet).");
        try
        {
            Scale.Model.Checkpoints.TrialCheckpoint.ReadState(CheckpointDirectory);   // before a base is prepared for it
        }
        catch (Scale.Model.Transformer.InvalidCheckpointException e)
        {
            throw new ArgumentException(e.Message);
        }
        return CheckpointDirectory;
    }
}
