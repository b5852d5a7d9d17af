using System.Text.Json;
using Scale.Model;
using Scale.Model.Checkpoints;
using Scale.Model.Training;
using Scale.Model.Transformer;

namespace Scale.Tests.Model;

/// <summary>Checkpoints fenced by attempt: two attempts of one trial (a zombie and its replacement) writing into one directory.</summary>
public class CheckpointFenceTests
{
    private static TrainingSession NewSession(Decoder baseModel)
        => new(MethodSpec.Preset("preserve").Build(baseModel, seed: 6), new TrainingOptions { LearningRate = 5e-3, WarmupSteps = 1, TotalSteps = 100 });

    private static void Step(TrainingSession session, int seed) => session.TrainStep([Tiny.Tokens(Tiny.Mha, batch: 2, length: 9, seed: seed)]);

    private static TrialCheckpointState StateOf(string checkpoint)
        => JsonSerializer.Deserialize<TrialCheckpointState>(File.ReadAllText(Path.Combine(checkpoint, TrialCheckpoint.StateFile)))!;

    [Fact]
    public void A_superseded_attempt_cannot_publish_or_claim_again_and_leaves_the_current_checkpoint_untouched()
    {
        using var dir = new TempDirectory();
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        using var zombie = NewSession(baseModel);
        using var replacement = NewSession(baseModel);
        var (first, second) = (new CheckpointFence(dir.Path, 1), new CheckpointFence(dir.Path, 2));
        var latest = dir.Combine("latest");

        first.Claim();
        Step(zombie, 1);
        TrialCheckpoint.Save(latest, zombie, 1, fence: first);
        second.Claim();
        Step(zombie, 2);
        var refused = Assert.Throws<CheckpointFencedException>(() => TrialCheckpoint.Save(latest, zombie, 2, fence: first));

        Assert.Equal((1, 2), (refused.Attempt, refused.Owner));
        Assert.Equal((1L, (int?)1), (StateOf(latest).Step, StateOf(latest).Attempt));   // attempt 1's, as it was
        TrialCheckpoint.Save(latest, replacement, 0, fence: second);
        Assert.Equal((int?)2, StateOf(latest).Attempt);
        Assert.Throws<CheckpointFencedException>(first.Claim);
        Assert.Equal(["latest"], Directory.GetDirectories(dir.Path).Select(Path.GetFileName));   // nothing staged is left
        // The record holds what the directory saw, in order, and nothing of the refused publication.
        Assert.Equal(["claimed by attempt 1", "latest at step 1 published by attempt 1", "claimed by attempt 2", "latest at step 0 published by attempt 2"],
                     CheckpointFence.ReadRecord(dir.Path).Select(l => l[(l.IndexOf(' ') + 1)..]));
    }

    [Fact]
    public void Two_attempts_writing_at_once_end_with_only_the_later_attempts_checkpoints()
    {
        using var dir = new TempDirectory();
        using var baseModel = Decoder.Create(Tiny.Mha, seed: 2);
        var (latest, previous) = (dir.Combine("latest"), dir.Combine("previous"));
        using var zombieWrote = new ManualResetEventSlim();
        using var replacementClaimed = new ManualResetEventSlim();
        long zombieSaves = 0;

        var zombie = Task.Run(() =>
        {
            using var session = NewSession(baseModel);
            var fence = new CheckpointFence(dir.Path, 1);
            fence.Claim();
            for (int i = 0; ; i++)   // ends when the fence refuses it
            {
                Step(session, 100 + i);
                TrialCheckpoint.Save(latest, session, i, fence: fence, rotateTo: previous);
                Interlocked.Increment(ref zombieSaves);
                zombieWrote.Set();
                if (replacementClaimed.IsSet && i > 1000) throw new InvalidOperationException("the zombie was never fenced");
            }
        });
        var replacement = Task.Run(() =>
        {
            using var session = NewSession(baseModel);
            var fence = new CheckpointFence(dir.Path, 2);
            zombieWrote.Wait(TimeSpan.FromMinutes(2));
            fence.Claim();
            replacementClaimed.Set();
            for (int i = 0; i < 12; i++)
            {
                Step(session, 200 + i);
                TrialCheckpoint.Save(latest, session, i, fence: fence, rotateTo: previous);
            }
            return session.Step;
        });

        var fenced = Assert.ThrowsAsync<CheckpointFencedException>(() => zombie).GetAwaiter().GetResult();
        long replacementSteps = replacement.GetAwaiter().GetResult();

        Assert.Equal(1, fenced.Attempt);
        Assert.True(Interlocked.Read(ref zombieSaves) >= 1);
        Assert.Equal((replacementSteps, (int?)2), (StateOf(latest).Step, StateOf(latest).Attempt));
        Assert.Equal((replacementSteps - 1, (int?)2), (StateOf(previous).Step, StateOf(previous).Attempt));
        Assert.Equal(["latest", "previous"], Directory.GetDirectories(dir.Path).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void A_claim_removes_what_earlier_attempts_left_half_written_but_not_a_later_attempts_staging()
    {
        using var dir = new TempDirectory();
        var earlier = CheckpointFence.StagingFor(dir.Combine("latest"), 1);
        var later = CheckpointFence.StagingFor(dir.Combine("latest"), 3);
        Directory.CreateDirectory(earlier);
        Directory.CreateDirectory(later);

        new CheckpointFence(dir.Path, 2).Claim();

        Assert.False(Directory.Exists(earlier));
        Assert.True(Directory.Exists(later));
        Assert.Equal("2", File.ReadAllText(dir.Combine(CheckpointFence.FenceFile)));
    }

    [Fact]
    public void Flushing_a_directory_that_is_not_there_fails_loudly()
        => Assert.Throws<IOException>(() => Durable.SyncDirectory(Path.Combine(Path.GetTempPath(), $"absent-{Guid.NewGuid():N}")));
}
