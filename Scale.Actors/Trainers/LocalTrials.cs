using System.Diagnostics;
using System.Threading.Channels;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using Scale.Actors.Reports;
using Scale.Actors.Sweeps;
using Scale.Actors.Telemetry;
using Scale.Model;

namespace Scale.Actors.Trainers;

/// <summary>
/// The trials of a local `scale run`: the sweep's trial runtime on this node, its trial progress, notices and events
/// shown on a view and written to the process's log, and the run's end when the journal cannot go on.
/// </summary>
internal sealed class LocalTrials(ActorSystem system, IActorRef dataLoader, SweepDefinition sweep, TrialRuntimeOptions options, int threads,
                                  SweepJournalWatch journal, Func<Task<SweepState>> state, ILogger log)
{
    public RunTiming Timing { get; } = new();

    /// <summary>Where this run's time went: the base, and the training, evaluation and checkpoint seconds of the trials that finished here.</summary>
    public sealed class RunTiming
    {
        public double BaseSeconds, TrainSeconds, EvaluationSeconds, CheckpointSeconds;
        public int Trials;
    }

    /// <summary>
    /// Prepares the base, starts the trial runtime and shows the sweep on <paramref name="view"/> until the sweep is
    /// finished, <paramref name="cancellation"/> is cancelled (running trials stop at their next step), the sweep is
    /// quarantined or its journal stays unwritable past <see cref="SweepJournalWatch.Patience"/> (both end it with one line).
    /// </summary>
    public async Task RunAsync(ISweepView view, CancellationToken cancellation)
    {
        var channel = Channel.CreateUnbounded<object>(new UnboundedChannelOptions { SingleReader = true });
        EventTap.Start(system, "view-feed", message => channel.Writer.TryWrite(message), typeof(TrialProgress), typeof(TrialNotice), typeof(ISweepEvent));
        var clock = Stopwatch.StartNew();
        Devices.UseThreads(threads);
        using var runtime = await TrialRuntime.StartAsync(system, dataLoader, sweep, options, new SynchronousProgress(view.Base), cancellation);
        Timing.BaseSeconds = clock.Elapsed.TotalSeconds;
        var ended = runtime.Done;
        var now = await state();
        int total = now.Trials.Count, done = now.Trials.Values.Count(t => t.Status.IsEnded());
        view.Overall(done, total);
        void Drain()
        {
            while (channel.Reader.TryRead(out var item))
            {
                switch (item)
                {
                    case TrialProgress p: view.Trial(p); break;
                    case TrialNotice n:
                        view.Notice(n);
                        log.LogWarning("Trial {trial}: {notice}", n.TrialId, n.Message);
                        break;
                    case ISweepEvent e:
                        view.Event(e);
                        SweepEventLog.Write(log, e);
                        if (e is TrialCompleted c)
                        {
                            Timing.Trials++;
                            Timing.TrainSeconds += c.Metrics.TrainSeconds;
                            Timing.EvaluationSeconds += c.Metrics.EvaluationSeconds;
                            Timing.CheckpointSeconds += c.Metrics.CheckpointSeconds;
                        }
                        if (e is TrialCompleted or TrialFailed or TrialStopped) view.Overall(++done, total);
                        break;
                }
            }
        }
        var interrupted = Task.Delay(Timeout.Infinite, cancellation);
        // The coordinator is supervised: a journal that cannot be written (a lock held elsewhere past the busy timeout, a
        // full disk) stops it, it is started again with backoff, and the trainers send their reports again. The run waits
        // for the journal up to SweepJournalWatch.Patience, then ends saying why; a journal that cannot be read ends it at once.
        while (!ended.IsCompleted)
        {
            Drain();
            await Task.WhenAny(ended, interrupted, journal.WhenQuarantined, channel.Reader.WaitToReadAsync(CancellationToken.None).AsTask(),
                               Task.Delay(TimeSpan.FromSeconds(5), CancellationToken.None));
            var givenUp = journal.GivenUp();
            if ((journal.WhenQuarantined.IsCompleted || givenUp is not null) && !ended.IsCompleted)
            {
                await runtime.Stop();
                Drain();
                if (givenUp is not null) throw new InvalidOperationException(givenUp);
                await state();   // throws the quarantine's one line
            }
            if (!cancellation.IsCancellationRequested) continue;
            // Ctrl+C or SIGTERM: running trials checkpoint the steps since their last checkpoint, and the journal records it.
            await runtime.Drain(TimeSpan.FromSeconds(15));
            Drain();
            return;
        }
        // The trainer stops once the coordinator says the sweep is finished; the last events may still be on their way to the feed.
        var last = await state();
        int expected = last.Trials.Values.Count(t => t.Status.IsEnded());
        var deadline = Stopwatch.StartNew();
        while (done < expected && deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            Drain();
            if (done < expected) await Task.WhenAny(channel.Reader.WaitToReadAsync().AsTask(), Task.Delay(TimeSpan.FromSeconds(10) - deadline.Elapsed));
        }
        Drain();
        await ended;
    }
}
