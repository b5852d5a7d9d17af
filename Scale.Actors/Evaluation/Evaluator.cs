using Akka.Actor;
using Scale.Model.Experiments;

namespace Scale.Actors.Evaluation;

// Protocol: scoring a trial's weights.
/// <summary>Scores the weights in <paramref name="Checkpoint"/> (none: the method as built) of a trial planned as <paramref name="Plan"/>.</summary>
internal sealed record EvaluateCheckpoint(string TrialId, TrialPlan Plan, string? Checkpoint);
internal sealed record CheckpointEvaluated(string TrialId, string? Checkpoint, TrialScores Scores);

/// <summary>
/// Scores checkpoints on retention and acquisition: every finished trial's final weights, and any checkpoint on
/// request. One evaluation at a time, off the mailbox thread; requests that arrive meanwhile wait in the stash.
/// </summary>
internal sealed class Evaluator : ReceiveActor, IWithUnboundedStash
{
    private sealed record Done(IActorRef ReplyTo, object Reply);

    private readonly TrialRunner runner;
    private readonly int threads;

    public Evaluator(TrialRunner runner, int threads)
    {
        (this.runner, this.threads) = (runner, threads);
        Ready();
    }

    public IStash Stash { get; set; } = null!;

    /// <summary>Evaluations use <paramref name="threads"/> libtorch threads (0: libtorch's default), like a trial's share of the device.</summary>
    public static Props Props(TrialRunner runner, int threads = 0) => Akka.Actor.Props.Create(() => new Evaluator(runner, threads));

    private void Ready() => Receive<EvaluateCheckpoint>(Start);

    private void Start(EvaluateCheckpoint request)
    {
        var replyTo = Sender;
        Task.Run(() =>
        {
            try
            {
                if (threads > 0) TorchSharp.torch.set_num_threads(threads);
                return new Done(replyTo, new CheckpointEvaluated(request.TrialId, request.Checkpoint, runner.Evaluate(request.Plan, request.Checkpoint)));
            }
            catch (Exception e)
            {
                return new Done(replyTo, new Status.Failure(e));
            }
        }).PipeTo(Self);
        Become(Busy);
    }

    private void Busy()
    {
        Receive<Done>(done =>
        {
            done.ReplyTo.Tell(done.Reply);
            Stash.UnstashAll();
            Become(Ready);
        });
        Receive<EvaluateCheckpoint>(_ => Stash.Stash());
    }
}
