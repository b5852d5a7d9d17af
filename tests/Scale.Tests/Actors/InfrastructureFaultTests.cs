using System.Diagnostics;
using Akka.Actor;
using Scale.Actors.Data;
using Scale.Actors.Evaluation;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Model.Experiments;
using Scale.Model.Training;
using Scale.Tests.Experiments;

namespace Scale.Tests.Actors;

/// <summary>
/// Faults of the infrastructure (disk full, I/O errors) against faults of the trial. The end-to-end test fills a small
/// tmpfs it mounts, which takes root (the CI machine runs as root); without root it fails saying so, since no
/// unprivileged way gives a real ENOSPC to a directory of checkpoints.
/// </summary>
public sealed class InfrastructureFaultTests() : SqliteTestKit("fault-tests")
{
    [Fact]
    public void A_full_disk_and_io_errors_are_the_infrastructures_and_everything_else_is_the_trials()
    {
        var full = Assert.ThrowsAny<IOException>(() =>
        {
            using var device = new FileStream("/dev/full", FileMode.Open, FileAccess.Write);
            device.Write(new byte[4096]);
            device.Flush();
        });
        Assert.True(Faults.IsInfrastructure(full), $"{full.GetType().Name} (HResult {full.HResult}): {full.Message}");
        Assert.True(Faults.IsInfrastructure(new AggregateException(new InvalidOperationException("wrapping", full))));
        Assert.True(Faults.IsInfrastructure(new System.Runtime.InteropServices.ExternalException("torch: write failed: No space left on device")));
        Assert.False(Faults.IsInfrastructure(new NonFiniteLossException(3, double.NaN)));
        Assert.False(Faults.IsInfrastructure(new FileNotFoundException("no such corpus", "/data/old/1.txt")));
        Assert.False(Faults.IsInfrastructure(new InvalidOperationException("a bug")));
    }

    [Fact]
    public async Task A_trial_whose_disk_fills_is_paused_without_spending_its_budget_and_completes_once_there_is_room()
    {
        Assert.True(geteuid() == 0, "this test mounts a small tmpfs and needs root (CI runs as root)");
        var mountPoint = Directory.CreateDirectory(Path.Combine(Root, "small-disk")).FullName;
        Run("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint);
        try
        {
            using var task = new TinyBioTask();
            var sweep = new SweepDefinition
            {
                Name = "disk-full",
                Experiment = new ExperimentSpec
                {
                    Seed = 9, VocabSize = task.Base.Config.VocabSize, Model = task.Base.Config,
                    Continual = new PhaseSpec { Steps = 9, Batch = 4, SequenceLength = 32, WarmupSteps = 1, LearningRate = 2e-3 },
                },
                Trials = [new TrialSpec("p", "preserve", new Dictionary<string, string>())], MaxConcurrent = 1, RetryBudget = 0, CheckpointEvery = 3,
            };
            var coordinator = Sys.ActorOf(SweepCoordinator.Props(sweep.Name));
            Assert.IsType<Accepted>(await coordinator.Ask<object>(sweep.StartCommand, TimeSpan.FromSeconds(60)));
            var paused = CreateTestProbe();
            Sys.EventStream.Subscribe(paused.Ref, typeof(TrialPaused));
            var loader = Sys.ActorOf(DataLoader.Props());
            loader.Tell(new RegisterDataset("new", task.Runner.TrainData));
            var executor = new SweepTrialExecutor(sweep, task.Runner, mountPoint, loader, "new", Sys.ActorOf(Evaluator.Props(task.Runner)), Sys.EventStream, threadsPerTrial: 1);
            var trainer = Sys.ActorOf(Trainer.Props(coordinator, "cpu", executor, TimeSpan.FromMilliseconds(200)));
            Watch(trainer);

            var pause = paused.ExpectMsg<TrialPaused>(TimeSpan.FromMinutes(3));
            Assert.Contains("No space left on device", pause.Reason);
            var during = await coordinator.Ask<SweepState>(GetSweepState.Instance, TimeSpan.FromSeconds(60));
            Assert.Equal((TrialStatus.Pending, 0, 1), (during.Trials["p"].Status, during.Trials["p"].FailedAttempts, during.Trials["p"].InfrastructureFaults));
            Assert.Empty(Directory.EnumerateDirectories(Path.Combine(mountPoint, "p"), "*.partial-a*"));   // nothing half-written left

            Run("mount", "-o", "remount,size=64m", "tmpfs", mountPoint);   // room again: the trial resumes after its pause
            ExpectTerminated(trainer, TimeSpan.FromMinutes(4));
            var after = await coordinator.Ask<SweepState>(GetSweepState.Instance, TimeSpan.FromSeconds(60));
            var trial = after.Trials["p"];
            Assert.Equal((TrialStatus.Completed, 0, 2), (trial.Status, trial.FailedAttempts, trial.Attempt));
            Assert.True(Directory.Exists(Path.Combine(mountPoint, "p", TrialRunner.Final)));
        }
        finally
        {
            Run("umount", "-l", mountPoint);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern uint geteuid();

    private static void Run(string command, params string[] arguments)
    {
        var start = new ProcessStartInfo(command) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{command} {string.Join(' ', arguments)}: {error}");
    }
}
