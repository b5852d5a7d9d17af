using Akka.Actor;
using Akka.Configuration;
using Scale.Actors.Data;
using Scale.Actors.Evaluation;
using Scale.Actors.Persistence;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Model.Checkpoints;
using Scale.Model.Experiments;
using Scale.Model.Transformer;
using Scale.Tests.Experiments;

namespace Scale.Tests.Actors;

/// <summary>The sweep runtime on one machine with the real parts: coordinator on SQLite, data loader, evaluator, a two-slot trainer, the sweep executor.</summary>
public sealed class SweepRuntimeTests() : SqliteTestKit("runtime-tests")
{
    private static SweepDefinition Sweep(ModelConfig config, params TrialSpec[] trials) => new()
    {
        Name = "faults",
        Experiment = new ExperimentSpec
        {
            Seed = 9, VocabSize = config.VocabSize,
            Model = config,
            Continual = new PhaseSpec { Steps = 9, Batch = 4, SequenceLength = 32, WarmupSteps = 1, LearningRate = 2e-3 },
        },
        Trials = trials, MaxConcurrent = 2, RetryBudget = 1, CheckpointEvery = 3,
    };

    private static TrialSpec Trial(string id, string method, params (string Key, string Value)[] parameters)
        => new(id, method, parameters.ToDictionary(p => p.Key, p => p.Value));

    /// <summary>Injects faults into chosen trials' first attempt, after the checkpoint at a step has been reported.</summary>
    private sealed class Faulty(ITrialExecutor inner, IReadOnlyDictionary<string, Action<string>> faults) : ITrialExecutor
    {
        public TrialMetrics Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, CancellationToken cancellation)
            => inner.Execute(trial, attempt, resume, (path, step) =>
            {
                onCheckpoint(path, step);
                if (attempt == 1 && step == 6 && faults.TryGetValue(trial.Id, out var fault)) fault(path);
            }, cancellation);
    }

    [Fact]
    public void Failed_attempts_are_retried_from_the_last_good_checkpoint_and_end_exactly_where_an_uninterrupted_trial_ends()
    {
        using var task = new TinyBioTask();
        var sweep = Sweep(task.Base.Config,
            Trial("reference", "preserve"), Trial("crash", "preserve"), Trial("corrupt", "preserve"),
            Trial("nan", "full", ("lr", "1e12")), Trial("adapt", "adapt", ("w12_layers", "1"), ("lr_w12", "2")));
        var coordinator = Sys.ActorOf(SweepCoordinator.Props(sweep.Name, snapshotEvery: 5));
        coordinator.Tell(sweep.StartCommand, TestActor);
        ExpectMsg<Accepted>();
        var loader = Sys.ActorOf(DataLoader.Props());
        loader.Tell(new RegisterDataset("new", task.Runner.TrainData));
        var evaluator = Sys.ActorOf(Evaluator.Props(task.Runner));
        var notices = CreateTestProbe();
        Sys.EventStream.Subscribe(notices.Ref, typeof(TrialNotice));
        var executor = new SweepTrialExecutor(sweep, task.Runner, Path.Combine(Root, "trials"), loader, "new", evaluator, Sys.EventStream, threadsPerTrial: 1);
        var faulty = new Faulty(executor, new Dictionary<string, Action<string>>
        {
            ["crash"] = _ => throw new InvalidOperationException("injected fault in a step"),
            ["corrupt"] = path =>
            {
                File.WriteAllBytes(Path.Combine(path, TrialCheckpoint.TrainableFile), [1, 2, 3]);
                throw new IOException("injected fault after the checkpoint was damaged");
            },
        });

        var trainer = Sys.ActorOf(Trainer.Props(coordinator, "cpu-0", faulty, TimeSpan.FromMilliseconds(200), slots: 2));
        Watch(trainer);
        ExpectTerminated(trainer, TimeSpan.FromMinutes(4));
        coordinator.Tell(GetSweepState.Instance, TestActor);
        var state = ExpectMsg<SweepState>();

        var reference = state.Trials["reference"];
        Assert.Equal(TrialStatus.Completed, reference.Status);
        Assert.Equal(1, reference.Attempt);
        foreach (var retried in new[] { "crash", "corrupt" })
        {
            var trial = state.Trials[retried];
            Assert.Equal(TrialStatus.Completed, trial.Status);
            Assert.Equal(2, trial.Attempt);
            Assert.Equal(reference.Metrics!.Scores.Retention, trial.Metrics!.Scores.Retention);
            Assert.Equal(reference.Metrics.Scores.Acquisition, trial.Metrics.Scores.Acquisition);
            Assert.Equal(reference.Metrics.FinalLoss, trial.Metrics.FinalLoss);   // bit for bit
        }
        Assert.NotNull(reference.Metrics!.FinalLoss);
        Assert.Equal(6, reference.Metrics.AcquisitionByAttribute!.Count);   // the six biography attributes
        Assert.Equal(reference.Metrics.Scores.Acquisition, reference.Metrics.AcquisitionByAttribute.Values.Average(), 10);
        Assert.Contains("injected fault in a step", state.Trials["crash"].FailureReason);
        var nan = state.Trials["nan"];
        Assert.Equal(TrialStatus.Failed, nan.Status);
        Assert.Equal(2, nan.FailedAttempts);
        Assert.Contains("NonFiniteLossException", nan.FailureReason);
        Assert.Equal(TrialStatus.Completed, state.Trials["adapt"].Status);
        var notice = notices.FishForMessage<TrialNotice>(n => n.TrialId == "corrupt", TimeSpan.FromSeconds(5));
        Assert.Contains("cannot resume", notice.Message);

        // Recovery through a snapshot (one every 5 events) gives the same state.
        Watch(coordinator);
        coordinator.Tell(PoisonPill.Instance);
        ExpectTerminated(coordinator);
        var recovered = Sys.ActorOf(SweepCoordinator.Props(sweep.Name, snapshotEvery: 5));
        recovered.Tell(GetSweepState.Instance, TestActor);
        var again = ExpectMsg<SweepState>();
        Assert.Equal(SweepSnapshot.Of(state).Trials, SweepSnapshot.Of(again).Trials, new TrialStateComparer());
        var journal = string.Concat(new[] { "sweeps.db", "sweeps.db-wal" }.Select(f => Path.Combine(Root, f)).Where(File.Exists)
            .Select(f => System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(f))));
        Assert.Contains("sweep-snapshot.v2", journal);
    }

    [Fact]
    public void A_resume_point_outside_the_trials_directory_or_beyond_its_steps_is_ignored_and_the_trial_trains_from_the_start()
    {
        using var task = new TinyBioTask();
        var sweep = Sweep(task.Base.Config, Trial("donor", "preserve"), Trial("victim", "preserve"));
        var loader = Sys.ActorOf(DataLoader.Props());
        loader.Tell(new RegisterDataset("new", task.Runner.TrainData));
        var evaluator = Sys.ActorOf(Evaluator.Props(task.Runner));
        var notices = CreateTestProbe();
        Sys.EventStream.Subscribe(notices.Ref, typeof(TrialNotice));
        var trials = Path.Combine(Root, "trials");
        var executor = new SweepTrialExecutor(sweep, task.Runner, trials, loader, "new", evaluator, Sys.EventStream, threadsPerTrial: 1);
        var donorCheckpoints = new Dictionary<long, string>();
        var donor = executor.Execute(sweep.Trials[0], 1, null, (path, step) => donorCheckpoints[step] = path, CancellationToken.None);
        // A link inside the victim's directory to the donor's checkpoint: inside by its name, outside once resolved.
        var victimDirectory = SweepPaths.TrialDirectory(trials, "victim");
        Directory.CreateDirectory(victimDirectory);
        var link = Path.Combine(victimDirectory, "elsewhere");
        Directory.CreateSymbolicLink(link, donorCheckpoints[6]);

        foreach (var (resume, attempt) in new[] { (new CheckpointRef(6, donorCheckpoints[6]), 1), (new CheckpointRef(6, link), 2), (new CheckpointRef(1L << 40, link), 3) })
        {
            var victimCheckpoints = new List<long>();
            var victim = executor.Execute(sweep.Trials[1], attempt, resume, (_, step) => victimCheckpoints.Add(step), CancellationToken.None);

            var notice = notices.FishForMessage<TrialNotice>(n => n.TrialId == "victim", TimeSpan.FromSeconds(30));
            Assert.Contains($"ignored the journal's resume point (step {resume.Step}", notice.Message);
            Assert.Equal([3, 6, 9], victimCheckpoints);   // from the start, not from the donor's step 6
            Assert.Equal(donor.FinalLoss, victim.FinalLoss);   // bit for bit a trial trained from the start
        }
    }

    [Fact]
    public void The_data_loader_serves_exactly_the_batches_a_trial_computes_locally_with_a_bounded_prefetch()
    {
        using var task = new TinyBioTask();
        var loader = Sys.ActorOf(DataLoader.Props());
        loader.Tell(new RegisterDataset("new", task.Runner.TrainData));
        var plan = new TrialPlan(Scale.Model.MethodSpec.Preset("preserve"), new PhaseSpec { Batch = 3 }, Seed: 5, CheckpointEvery: 1);
        using var batches = new PrefetchingBatches(loader, "new", plan.Seed, plan.Phase.Batch, depth: 2, TimeSpan.FromSeconds(30));
        foreach (var step in new long[] { 0, 1, 2, 7, 8, 40 })
        {
            using var remote = batches.BatchAt(step);
            using var local = task.Runner.LocalBatch(plan, step);
            Assert.Equal(local.shape, remote.shape);
            Assert.True(remote.equal(local).all().item<bool>(), $"step {step}");
        }
        loader.Tell(new GetBatch("missing", 1, 2, 0), TestActor);
        Assert.Contains("No data set 'missing'", ExpectMsg<Status.Failure>().Cause.Message);
    }

    [Fact]
    public async Task Two_trainers_in_one_process_train_every_trial_once_and_score_it_exactly_as_one_trainer_does()
    {
        var experiment = ExperimentFiles.Parse(ExperimentTests.TinyBio, "devices");
        TrialSpec[] trials = [Trial("p", "preserve"), Trial("a", "adapt"), Trial("f", "full"), Trial("l", "lora")];
        var starts = CreateTestProbe();
        Sys.EventStream.Subscribe(starts.Ref, typeof(TrialStarted));

        Task<SweepState> RunOn(string name, IReadOnlyList<string> devices)
            => RunToTheEnd(new SweepDefinition { Name = name, Experiment = experiment, Trials = trials, MaxConcurrent = 2, RetryBudget = 0, CheckpointEvery = 4 },
                           devices, slotsPerDevice: 1, runtime =>
                           {
                               Assert.Equal(devices.Count, runtime.Trainers.Count);
                               // Every CPU trainer shares the CPU's resident base: no copy is made for cpu:1.
                               Assert.All(devices, d => Assert.Same(runtime.Task.Runner, runtime.Task.Runner.On(Scale.Model.Devices.Parse(d))));
                           });

        var two = await RunOn("two-trainers", ["cpu", "cpu:1"]);
        var startedOn = starts.ReceiveN(trials.Length, TimeSpan.FromSeconds(30)).Cast<TrialStarted>().ToList();
        var one = await RunOn("one-trainer", ["cpu"]);

        Assert.All(two.Trials.Values, t => Assert.Equal((TrialStatus.Completed, 1), (t.Status, t.Attempt)));
        Assert.Equal(trials.Select(t => t.Id).Order(), startedOn.Select(s => s.TrialId).Order());   // each trial started once
        Assert.Equal(["two-trainers/cpu", "two-trainers/cpu:1"], startedOn.Select(s => s.TrainerId).Distinct().Order());   // on both trainers
        foreach (var trial in trials)
        {
            var (a, b) = (two.Trials[trial.Id].Metrics!, one.Trials[trial.Id].Metrics!);
            Assert.Equal((b.Scores.Retention, b.Scores.Acquisition, b.FinalLoss), (a.Scores.Retention, a.Scores.Acquisition, a.FinalLoss));   // bit for bit
        }
    }

    [Fact]
    public async Task Trials_of_a_sweep_in_lock_step_share_the_bases_forward_and_score_exactly_as_without_it()
    {
        var experiment = ExperimentFiles.Parse(ExperimentTests.TinyBio, "lock-step");
        TrialSpec[] trials = [Trial("p1", "preserve", ("lr", "6e-3")), Trial("p2", "preserve", ("lr", "2e-3")), Trial("p3", "preserve", ("lr", "1e-2")),
                              Trial("a", "adapt", ("w12_last", "1")), Trial("f", "full")];

        async Task<(SweepState State, long Shared)> Run(string name, bool lockStep)
        {
            long shared = 0;
            var state = await RunToTheEnd(new SweepDefinition { Name = name, Experiment = experiment, Trials = trials, MaxConcurrent = 3, RetryBudget = 0, CheckpointEvery = 4, LockStep = lockStep },
                                          ["cpu"], slotsPerDevice: 3, runtime =>
                                          {
                                              Assert.Equal(lockStep, runtime.Executors[0].LockStep is not null);
                                              shared = runtime.Executors[0].LockStep?.TracesShared ?? 0;
                                          });
            return (state, shared);
        }

        var (grouped, shared) = await Run("lock-step-on", lockStep: true);
        var (alone, _) = await Run("lock-step-off", lockStep: false);

        Assert.True(shared > 0, "no base forward was shared");
        foreach (var trial in trials)
        {
            var (a, b) = (grouped.Trials[trial.Id].Metrics!, alone.Trials[trial.Id].Metrics!);
            Assert.Equal((b.Scores.Retention, b.Scores.Acquisition, b.FinalLoss, b.Scores.RetentionFirstToken, b.Scores.AcquisitionFirstToken),
                         (a.Scores.Retention, a.Scores.Acquisition, a.FinalLoss, a.Scores.RetentionFirstToken, a.Scores.AcquisitionFirstToken));   // bit for bit
        }
    }

    /// <summary>
    /// Starts <paramref name="sweep"/> on a coordinator of its own and a real runtime on <paramref name="devices"/>, runs it to the
    /// end and returns its state; <paramref name="inspect"/> sees the runtime once its trials are done, before it is disposed.
    /// </summary>
    private async Task<SweepState> RunToTheEnd(SweepDefinition sweep, IReadOnlyList<string> devices, int slotsPerDevice, Action<TrialRuntime> inspect)
    {
        var coordinator = Sys.ActorOf(SweepCoordinator.Props(sweep.Name));
        Assert.IsType<Accepted>(await coordinator.Ask<object>(sweep.StartCommand, TimeSpan.FromSeconds(60)));
        using var runtime = await TrialRuntime.StartAsync(Sys, Sys.ActorOf(DataLoader.Props()), sweep, new TrialRuntimeOptions
        {
            Coordinator = coordinator, DataDirectory = Root, Devices = devices, SlotsPerDevice = slotsPerDevice, ThreadsPerTrial = 1,
            TrainerId = device => $"{sweep.Name}/{device}", PollInterval = TimeSpan.FromMilliseconds(200), NameSuffix = "-" + sweep.Name,
        }, null, CancellationToken.None);
        await runtime.Done.WaitAsync(TimeSpan.FromMinutes(10));
        inspect(runtime);
        return await coordinator.Ask<SweepState>(GetSweepState.Instance, TimeSpan.FromSeconds(60));
    }

    private sealed class TrialStateComparer : IEqualityComparer<TrialState>
    {
        public bool Equals(TrialState? a, TrialState? b)
            => a is not null && b is not null && a.Spec.Id == b.Spec.Id && a.Status == b.Status && a.Attempt == b.Attempt
               && a.FailedAttempts == b.FailedAttempts && a.LastCheckpoint == b.LastCheckpoint && a.FailureReason == b.FailureReason
               && Plain(a.Metrics) == Plain(b.Metrics)
               && Same(a.Metrics?.RetentionByAttribute, b.Metrics?.RetentionByAttribute) && Same(a.Metrics?.AcquisitionByAttribute, b.Metrics?.AcquisitionByAttribute);

        private static TrialMetrics? Plain(TrialMetrics? m) => m is null ? null : m with { RetentionByAttribute = null, AcquisitionByAttribute = null };

        private static bool Same(IReadOnlyDictionary<string, double>? a, IReadOnlyDictionary<string, double>? b)
            => a is null ? b is null : b is not null && a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && v == kv.Value);

        public int GetHashCode(TrialState t) => t.Spec.Id.GetHashCode();
    }
}
