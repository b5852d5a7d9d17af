using Akka.Actor;
using Scale.Actors.Sweeps;
using Scale.Model.Experiments;

namespace Scale.Actors.Trainers;

/// <summary>Runs one granted trial: resumes from <paramref name="resume"/> when given, reports each checkpoint, returns the outcome.</summary>
public interface ITrialExecutor
{
    TrialOutcome Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, CancellationToken cancellation);
}

/// <summary>
/// A trainer for one device: it pulls work from the coordinator (never pushed), runs the trial off its mailbox
/// thread, forwards every checkpoint, reports the end (completed, or failed with the reason), and asks again.
/// When no trial is free it asks again after <c>pollInterval</c>; when the sweep is finished it stops.
/// </summary>
public sealed class Trainer : ReceiveActor, IWithTimers
{
    private sealed record Finished(string TrialId, int Attempt, TrialOutcome Outcome);
    private sealed record Crashed(string TrialId, int Attempt, string Reason);
    private sealed record CheckpointWritten(string TrialId, int Attempt, string Path, long Step);
    private sealed record AskForWork
    {
        public static readonly AskForWork Instance = new();
    }

    private readonly IActorRef coordinator;
    private readonly string trainerId;
    private readonly ITrialExecutor executor;
    private readonly TimeSpan pollInterval;
    private readonly CancellationTokenSource stopping = new();

    public Trainer(IActorRef coordinator, string trainerId, ITrialExecutor executor, TimeSpan pollInterval)
    {
        (this.coordinator, this.trainerId, this.executor, this.pollInterval) = (coordinator, trainerId, executor, pollInterval);
        Idle();
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(IActorRef coordinator, string trainerId, ITrialExecutor executor, TimeSpan? pollInterval = null)
        => Akka.Actor.Props.Create(() => new Trainer(coordinator, trainerId, executor, pollInterval ?? TimeSpan.FromSeconds(1)));

    protected override void PreStart() => Self.Tell(AskForWork.Instance);

    protected override void PostStop() => stopping.Cancel();

    private void Idle()
    {
        Receive<AskForWork>(_ => coordinator.Tell(new RequestWork(trainerId)));
        Receive<NoWorkAvailable>(n =>
        {
            if (n.SweepFinished) Context.Stop(Self);
            else Timers.StartSingleTimer("ask", AskForWork.Instance, pollInterval);
        });
        Receive<WorkGranted>(Start);
        Receive<Accepted>(_ => { });
    }

    private void Start(WorkGranted work)
    {
        var self = Self;
        var (trial, attempt) = (work.Trial, work.Attempt);
        Task.Run(() =>
        {
            try
            {
                var outcome = executor.Execute(trial, attempt, work.Checkpoint,
                    (path, step) => self.Tell(new CheckpointWritten(trial.Id, attempt, path, step)), stopping.Token);
                return (object)new Finished(trial.Id, attempt, outcome);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                return new Crashed(trial.Id, attempt, $"{e.GetType().Name}: {e.Message}");
            }
        }).PipeTo(self);
        Become(Running);
    }

    private void Running()
    {
        Receive<CheckpointWritten>(c => coordinator.Tell(new ReportCheckpoint(c.TrialId, c.Attempt, c.Step, c.Path)));
        Receive<Finished>(f =>
        {
            coordinator.Tell(new ReportCompleted(f.TrialId, f.Attempt,
                new TrialMetrics(f.Outcome.Retention, f.Outcome.Acquisition, f.Outcome.Forgetting)));
            BecomeIdleAndAsk();
        });
        Receive<Crashed>(c =>
        {
            coordinator.Tell(new ReportFailed(c.TrialId, c.Attempt, c.Reason));
            BecomeIdleAndAsk();
        });
        Receive<Accepted>(_ => { });
    }

    private void BecomeIdleAndAsk()
    {
        Become(Idle);
        Self.Tell(AskForWork.Instance);
    }
}
