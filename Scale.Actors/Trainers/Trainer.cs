using Akka.Actor;
using Akka.Event;
using Scale.Actors.Sweeps;

namespace Scale.Actors.Trainers;

/// <summary>Runs one granted trial: resumes from <paramref name="resume"/> when given, reports each checkpoint, returns the scores.</summary>
internal interface ITrialExecutor
{
    TrialMetrics Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, CancellationToken cancellation);

    /// <summary>As <see cref="Execute(TrialSpec, int, CheckpointRef?, Action{string, long}, CancellationToken)"/>, reporting scores during training too.</summary>
    TrialMetrics Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, Action<ScorePoint> onScores,
                         CancellationToken cancellation)
        => Execute(trial, attempt, resume, onCheckpoint, cancellation);

    /// <summary>
    /// As the scoring overload; when <paramref name="drain"/> is signalled the trial writes a checkpoint of the steps since
    /// its last one (reported through <paramref name="onCheckpoint"/>) and stops. An executor that cannot checkpoint on
    /// demand stops at once, as on <paramref name="cancellation"/>.
    /// </summary>
    TrialMetrics Execute(TrialSpec trial, int attempt, CheckpointRef? resume, Action<string, long> onCheckpoint, Action<ScorePoint> onScores,
                         CancellationToken cancellation, CancellationToken drain)
    {
        using var either = CancellationTokenSource.CreateLinkedTokenSource(cancellation, drain);
        return Execute(trial, attempt, resume, onCheckpoint, onScores, either.Token);
    }
}

/// <summary>
/// Which failures are the infrastructure's, not the trial's: storage that is full, read-only, gone or failing (disk full,
/// quota, I/O errors, a stale or disconnected network mount). They pause a trial without spending its retry budget;
/// everything else (a NaN loss, a bug, bad settings) is the trial's own failure and spends it.
/// </summary>
internal static class Faults
{
    // errno values on Linux: EIO, ENOSPC, EROFS, ENOTCONN, ETIMEDOUT, ESTALE, EDQUOT.
    private static readonly HashSet<int> InfrastructureErrnos = [5, 28, 30, 107, 110, 116, 122];

    private static readonly string[] InfrastructureMessages =
        ["No space left on device", "Disk quota exceeded", "Input/output error", "Read-only file system", "Stale file handle",
         "Transport endpoint is not connected"];

    public static bool IsInfrastructure(Exception error)
    {
        for (var e = error; e is not null; e = e.InnerException)
        {
            if (e is IOException io && InfrastructureErrnos.Contains(io.HResult & 0xFFFF)) return true;
            if ((e is IOException or System.Runtime.InteropServices.ExternalException or UnauthorizedAccessException)
                && InfrastructureMessages.Any(m => e.Message.Contains(m, StringComparison.OrdinalIgnoreCase))) return true;
        }
        return false;
    }
}

// Published on the actor system's event stream while trials run (for progress displays and status views).
internal sealed record TrialProgress(string TrialId, int Attempt, long Step, long TotalSteps, double Loss, double TokensPerSecond, double EtaSeconds);
internal sealed record TrialNotice(string TrialId, string Message);

/// <summary>
/// A trainer for one device with a number of trial slots: it pulls work from the coordinator (never pushed) while
/// a slot is free, runs each trial off its mailbox thread, forwards every checkpoint, reports the end (completed
/// with its metrics, or failed with the reason), and asks again. When no trial is free it asks again after
/// <c>pollInterval</c>; when the sweep is finished and nothing runs here, it stops.
/// Every message to the coordinator waits for its answer: a request that gets none (the coordinator is moving
/// to another node, or its database is unreachable) is asked again, and a report is sent again with backoff until
/// it is acknowledged — the coordinator records a repeated report once. A report answered with
/// <see cref="AttemptSuperseded"/> means another trainer owns the trial now: it is stopped here.
/// </summary>
internal sealed class Trainer : ReceiveActor, IWithTimers
{
    private sealed record Finished(string TrialId, int Attempt, TrialMetrics Metrics);
    private sealed record Crashed(string TrialId, int Attempt, string Reason, bool Infrastructure);
    private sealed record Cancelled(string TrialId, int Attempt);
    private sealed record CheckpointWritten(string TrialId, int Attempt, string Path, long Step);
    private sealed record Scored(string TrialId, int Attempt, ScorePoint Point);
    private sealed record Answered(ITrialReport Report, object Answer);
    private sealed record Unanswered(ITrialReport Report, int Tries, string Why);
    private sealed record Resend(ITrialReport Report, int Tries);
    private sealed record WorkAnswer(object Answer);
    private sealed record AskForWork
    {
        public static readonly AskForWork Instance = new();
    }

    /// <summary>
    /// Told by the runtime when the node stops gracefully: ask for no more work, have each running trial checkpoint the
    /// steps since its last checkpoint and stop, and stop once every report (those checkpoints included) is acknowledged.
    /// </summary>
    public sealed record Drain
    {
        public static readonly Drain Instance = new();
    }

    private readonly IActorRef coordinator;
    private readonly string trainerId;
    private readonly int slots;
    private readonly ITrialExecutor executor;
    private readonly TimeSpan pollInterval;
    private readonly TimeSpan replyTimeout;
    private readonly Func<ISweepCommand, object> envelope;
    private readonly CancellationTokenSource stopping = new();
    private readonly Dictionary<string, (int Attempt, CancellationTokenSource Cancel, CancellationTokenSource Drain)> running = new();
    /// <summary>Reports sent and not yet acknowledged (a drain waits for them).</summary>
    private readonly HashSet<ITrialReport> unacknowledged = new();
    private bool draining;
    /// <summary>Trials that ended here whose end is not acknowledged yet: still ours, so they are named as running when asking for work.</summary>
    private readonly HashSet<string> ending = new();
    private readonly ILoggingAdapter log = Context.GetLogger();
    private bool asking;
    private long resends;

    public Trainer(IActorRef coordinator, string trainerId, int slots, ITrialExecutor executor, TimeSpan pollInterval,
                   TimeSpan? replyTimeout = null, Func<ISweepCommand, object>? envelope = null)
    {
        if (slots < 1) throw new ArgumentException($"A trainer needs at least one slot, got {slots}.");
        (this.coordinator, this.trainerId, this.slots, this.executor, this.pollInterval) = (coordinator, trainerId, slots, executor, pollInterval);
        this.replyTimeout = replyTimeout ?? TimeSpan.FromSeconds(30);
        this.envelope = envelope ?? (command => command);
        Receive<AskForWork>(_ => Ask());
        Receive<WorkAnswer>(a => OnWorkAnswer(a.Answer));
        Receive<CheckpointWritten>(c => Send(new ReportCheckpoint(c.TrialId, c.Attempt, c.Step, c.Path), 0));
        Receive<Scored>(s => Send(new ReportScores(s.TrialId, s.Attempt, s.Point), 0));
        Receive<Finished>(f => End(f.TrialId, new ReportCompleted(f.TrialId, f.Attempt, f.Metrics)));
        Receive<Crashed>(c => End(c.TrialId, new ReportFailed(c.TrialId, c.Attempt, c.Reason) { Infrastructure = c.Infrastructure }));
        Receive<Cancelled>(c =>
        {
            if (running.TryGetValue(c.TrialId, out var r) && r.Attempt == c.Attempt) running.Remove(c.TrialId);
            Self.Tell(AskForWork.Instance);
            StopWhenDrained();
        });
        Receive<Answered>(a =>
        {
            unacknowledged.Remove(a.Report);
            OnAnswer(a.Report, a.Answer);
            StopWhenDrained();
        });
        Receive<Unanswered>(u =>
        {
            var delay = TimeSpan.FromSeconds(Math.Min(30, Math.Pow(2, u.Tries)));
            log.Warning("trainer {0}: no answer to {1} for trial {2} ({3}); sending it again in {4:0} s",
                        trainerId, u.Report.GetType().Name, u.Report.TrialId, u.Why, delay.TotalSeconds);
            Timers.StartSingleTimer($"resend-{++resends}", new Resend(u.Report, u.Tries + 1), delay);
        });
        Receive<Resend>(r => Send(r.Report, r.Tries));
        Receive<Drain>(_ =>
        {
            draining = true;
            foreach (var r in running.Values) r.Drain.Cancel();
            StopWhenDrained();
        });
    }

    private void StopWhenDrained()
    {
        if (draining && running.Count == 0 && unacknowledged.Count == 0) Context.Stop(Self);
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(IActorRef coordinator, string trainerId, ITrialExecutor executor, TimeSpan? pollInterval = null, int slots = 1,
                              TimeSpan? replyTimeout = null, Func<ISweepCommand, object>? envelope = null)
        => Akka.Actor.Props.Create(() => new Trainer(coordinator, trainerId, slots, executor, pollInterval ?? TimeSpan.FromSeconds(1), replyTimeout, envelope));

    protected override void PreStart() => Self.Tell(AskForWork.Instance);

    protected override void PostStop() => stopping.Cancel();

    private void Ask()
    {
        if (asking || draining || running.Count >= slots) return;
        asking = true;
        coordinator.Ask<object>(envelope(new RequestWork(trainerId, slots) { Running = running.Keys.Concat(ending).Distinct().ToList() }), replyTimeout)
            .PipeTo(Self, success: answer => new WorkAnswer(answer), failure: e => new WorkAnswer(new Status.Failure(e)));
    }

    private void OnWorkAnswer(object answer)
    {
        asking = false;
        switch (answer)
        {
            case WorkGranted work:
                Start(work);
                break;
            case NoWorkAvailable { SweepFinished: true } when running.Count == 0:
                Context.Stop(Self);
                break;
            case NoWorkAvailable { SweepFinished: true }:
                break;   // the running trials' ends ask again
            case NoWorkAvailable:
                Timers.StartSingleTimer("ask", AskForWork.Instance, pollInterval);
                break;
            default:
                var why = answer is Status.Failure f ? f.Cause.Message : answer.GetType().Name;
                log.Warning("trainer {0}: no work answer from the coordinator ({1}); asking again", trainerId, why);
                Timers.StartSingleTimer("ask", AskForWork.Instance, pollInterval);
                break;
        }
    }

    private void Start(WorkGranted work)
    {
        var self = Self;
        var (trial, attempt) = (work.Trial, work.Attempt);
        var cancel = CancellationTokenSource.CreateLinkedTokenSource(stopping.Token);
        var drain = new CancellationTokenSource();
        running[trial.Id] = (attempt, cancel, drain);
        Task.Factory.StartNew(() =>
        {
            try
            {
                var metrics = executor.Execute(trial, attempt, work.Checkpoint,
                    (path, step) => self.Tell(new CheckpointWritten(trial.Id, attempt, path, step)),
                    point => self.Tell(new Scored(trial.Id, attempt, point)), cancel.Token, drain.Token);
                return (object)new Finished(trial.Id, attempt, metrics);
            }
            catch (Exception e) when ((cancel.IsCancellationRequested || drain.IsCancellationRequested)
                                      && e is OperationCanceledException or AggregateException { InnerException: OperationCanceledException })
            {
                return new Cancelled(trial.Id, attempt);
            }
            catch (Scale.Model.Checkpoints.CheckpointFencedException e)
            {
                // A later attempt owns the trial (this node was taken for lost while it trained): stop, writing nothing more.
                log.Warning("trainer {0}: {1}", trainerId, e.Message);
                return new Cancelled(trial.Id, attempt);
            }
            catch (Exception e)
            {
                var inner = e is AggregateException { InnerException: { } first } ? first : e;
                bool infrastructure = Faults.IsInfrastructure(inner);
                return new Crashed(trial.Id, attempt, (infrastructure ? "infrastructure fault: " : "") + $"{inner.GetType().Name}: {inner.Message}", infrastructure);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).PipeTo(self);
        Self.Tell(AskForWork.Instance);   // another slot may be free
    }

    private void End(string trialId, ITrialReport report)
    {
        running.Remove(trialId);
        ending.Add(trialId);
        Send(report, 0);
        Self.Tell(AskForWork.Instance);
    }

    private void Send(ITrialReport report, int tries)
    {
        unacknowledged.Add(report);
        coordinator.Ask<object>(envelope(report), replyTimeout)
            .PipeTo(Self, success: answer => new Answered(report, answer), failure: e => new Unanswered(report, tries, e.Message));
    }

    private void OnAnswer(ITrialReport report, object answer)
    {
        if (report is ReportCompleted or ReportFailed) ending.Remove(report.TrialId);
        switch (answer)
        {
            case AttemptSuperseded s when running.TryGetValue(s.TrialId, out var r) && r.Attempt == s.Attempt:
                log.Warning("trainer {0}: trial {1} attempt {2} belongs to another trainer now; stopping it here", trainerId, s.TrialId, s.Attempt);
                r.Cancel.Cancel();
                break;
            case TrialStopRequested s when running.TryGetValue(s.TrialId, out var r) && r.Attempt == s.Attempt:
                log.Info("trainer {0}: trial {1} {2}", trainerId, s.TrialId, s.Reason);
                r.Cancel.Cancel();
                break;
            case Status.Failure f:
                log.Warning("trainer {0}: the coordinator refused {1} for trial {2}: {3}", trainerId, report.GetType().Name, report.TrialId, f.Cause.Message);
                break;
        }
    }
}
