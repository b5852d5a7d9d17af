using Akka.Actor;
using Scale.Model.Data;
using Scale.Model.Experiments;
using static TorchSharp.torch;

namespace Scale.Actors.Data;

// Protocol: a node's data sets and the batches drawn from them.
/// <summary>Makes a packed data set available under <paramref name="Dataset"/> on this node.</summary>
internal sealed record RegisterDataset(string Dataset, ITokenWindows Sequences);
/// <summary>Asks for the batch of <paramref name="Step"/> of a trial that draws <paramref name="BatchSize"/> sequences per step in the order of <paramref name="Seed"/>.</summary>
internal sealed record GetBatch(string Dataset, long Seed, int BatchSize, long Step);
/// <summary>A batch as plain tokens, row-major (Rows × Columns): immutable, and cheap to send.</summary>
internal sealed record BatchReady(long Step, long[] Tokens, int Rows, int Columns);

/// <summary>
/// A node's data loader: deterministic batches from (data set, seed, batch size, step), so a trial resumed
/// anywhere sees exactly the batches it would have seen. It holds no queue of its own: each request is
/// answered at once, and the trainer's <see cref="PrefetchingBatches"/> bounds how many are in flight.
/// </summary>
internal sealed class DataLoader : ReceiveActor
{
    private readonly Dictionary<string, ITokenWindows> datasets = new();
    private readonly Dictionary<(string, long, int), BatchSchedule> schedules = new();

    public DataLoader()
    {
        Receive<RegisterDataset>(r => datasets[r.Dataset] = r.Sequences);
        Receive<GetBatch>(Handle);
    }

    public static Props Props() => Akka.Actor.Props.Create(() => new DataLoader());

    private void Handle(GetBatch request)
    {
        if (!datasets.TryGetValue(request.Dataset, out var sequences))
        {
            Sender.Tell(new Status.Failure(new ArgumentException($"No data set '{request.Dataset}' on this node.")));
            return;
        }
        var key = (request.Dataset, request.Seed, request.BatchSize);
        if (!schedules.TryGetValue(key, out var schedule))
            schedules[key] = schedule = new BatchSchedule(sequences.Count, request.BatchSize, request.Seed);
        var indices = schedule.IndicesFor(request.Step);
        int columns = sequences.SequenceLength + 1;
        using var batch = sequences.Batch(indices);
        Sender.Tell(new BatchReady(request.Step, batch.data<long>().ToArray(), indices.Count, columns));
    }
}

/// <summary>
/// A trial's batch source backed by a <see cref="DataLoader"/>: it keeps up to <c>depth</c> requests in flight ahead
/// of the step being trained (prefetch), and asks for the next only when one is taken (backpressure: nothing
/// queues without bound). Used from the trial's training thread.
/// </summary>
internal sealed class PrefetchingBatches(IActorRef loader, string dataset, long seed, int batchSize, int depth, TimeSpan timeout) : IBatchSource, IDisposable
{
    private readonly Dictionary<long, Task<BatchReady>> inFlight = new();

    public Tensor BatchAt(long step)
    {
        for (long s = step; s < step + Math.Max(1, depth); s++)
            if (!inFlight.ContainsKey(s)) inFlight[s] = loader.Ask<BatchReady>(new GetBatch(dataset, seed, batchSize, s), timeout);
        var ready = inFlight[step].GetAwaiter().GetResult();
        inFlight.Remove(step);
        foreach (var stale in inFlight.Keys.Where(s => s < step).ToList()) inFlight.Remove(stale);
        return tensor(ready.Tokens, [ready.Rows, ready.Columns]);
    }

    public void Dispose() => inFlight.Clear();
}
