using Akka.Actor;
using Akka.Event;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Trainers;

/// <summary>Runs one granted trial: resumes from <paramref name="resume"/> when given, reports each checkpoint, returns the scores.</summary>
public interface ITrialExecutor
{
    TrialMetrics Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, CancellationToken cancellation);
}

// Published on the actor system's event stream while trials run (for progress displays and status views).
public sealed record TrialProgress(string TrialId, int Attempt, long Step, long TotalSteps, double Loss, double TokensPerSecond, double EtaSeconds);
public sealed record TrialNotice(string TrialId, string Message);

/// <summary>
/// A trainer for one device with a number of trial slots: it pulls work from the coordinator (never pushed) while
/// a slot is free, runs each trial off its mailbox thread, forwards every checkpoint, reports the end (completed
/// with its metrics, or failed with the reason), and asks again. When no trial is free it asks again after
/// <c>pollInterval</c>; when the sweep is finished and nothing runs here, it stops.
/// </summary>
public sealed class Trainer : ReceiveActor, IWithTimers
{
    private sealed record Finished(string TrialId, int Attempt, TrialMetrics Metrics);
    private sealed record Crashed(string TrialId, int Attempt, string Reason);
    private sealed record CheckpointWritten(string TrialId, int Attempt, string Path, long Step);
    private sealed record AskForWork
    {
        public static readonly AskForWork Instance = new();
    }

    private readonly IActorRef coordinator;
    private readonly string trainerId;
    private readonly int slots;
    private readonly ITrialExecutor executor;
    private readonly TimeSpan pollInterval;
    private readonly CancellationTokenSource stopping = new();
    private readonly HashSet<string> running = new();
    private bool asking;

    public Trainer(IActorRef coordinator, string trainerId, int slots, ITrialExecutor executor, TimeSpan pollInterval)
    {
        if (slots < 1) throw new ArgumentException($"A trainer needs at least one slot, got {slots}.");
        (this.coordinator, this.trainerId, this.slots, this.executor, this.pollInterval) = (coordinator, trainerId, slots, executor, pollInterval);
        Receive<AskForWork>(_ => Ask());
        Receive<NoWorkAvailable>(OnNoWork);
        Receive<WorkGranted>(Start);
        Receive<CheckpointWritten>(c => coordinator.Tell(new ReportCheckpoint(c.TrialId, c.Attempt, c.Step, c.Path)));
        Receive<Finished>(f => End(f.TrialId, new ReportCompleted(f.TrialId, f.Attempt, f.Metrics)));
        Receive<Crashed>(c => End(c.TrialId, new ReportFailed(c.TrialId, c.Attempt, c.Reason)));
        Receive<Accepted>(_ => { });
        Receive<Status.Failure>(f => Context.GetLogger().Warning("trainer {0}: the coordinator refused a report: {1}", trainerId, f.Cause.Message));
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(IActorRef coordinator, string trainerId, ITrialExecutor executor, TimeSpan? pollInterval = null, int slots = 1)
        => Akka.Actor.Props.Create(() => new Trainer(coordinator, trainerId, slots, executor, pollInterval ?? TimeSpan.FromSeconds(1)));

    protected override void PreStart() => Self.Tell(AskForWork.Instance);

    protected override void PostStop() => stopping.Cancel();

    private void Ask()
    {
        if (asking || running.Count >= slots) return;
        asking = true;
        coordinator.Tell(new RequestWork(trainerId, slots));
    }

    private void OnNoWork(NoWorkAvailable none)
    {
        asking = false;
        if (none.SweepFinished && running.Count == 0) Context.Stop(Self);
        else if (!none.SweepFinished) Timers.StartSingleTimer("ask", AskForWork.Instance, pollInterval);
    }

    private void Start(WorkGranted work)
    {
        asking = false;
        var self = Self;
        var (trial, attempt) = (work.Trial, work.Attempt);
        running.Add(trial.Id);
        Task.Factory.StartNew(() =>
        {
            try
            {
                var metrics = executor.Execute(trial, attempt, work.Checkpoint,
                    (path, step) => self.Tell(new CheckpointWritten(trial.Id, attempt, path, step)), stopping.Token);
                return (object)new Finished(trial.Id, attempt, metrics);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                var inner = e is AggregateException { InnerException: { } first } ? first : e;
                return new Crashed(trial.Id, attempt, $"{inner.GetType().Name}: {inner.Message}");
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).PipeTo(self);
        Self.Tell(AskForWork.Instance);   // another slot may be free
    }

    private void End(string trialId, ISweepCommand report)
    {
        running.Remove(trialId);
        coordinator.Tell(report);
        Self.Tell(AskForWork.Instance);
    }
}
