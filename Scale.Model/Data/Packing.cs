using static TorchSharp.torch;

namespace Scale.Model.Data;

/// <summary>
/// Token sequences for language-model training: documents joined by the end-of-text token and cut into
/// windows of T + 1 tokens (inputs 0..T-1 predict targets 1..T). A trailing part shorter than a window is dropped.
/// </summary>
internal sealed class PackedSequences : ITokenWindows
{
    private readonly int[] tokens;

    public PackedSequences(IEnumerable<IReadOnlyList<int>> documents, int endOfText, int sequenceLength)
    {
        if (sequenceLength < 1) throw new ArgumentOutOfRangeException(nameof(sequenceLength), "must be at least 1");
        SequenceLength = sequenceLength;
        var all = new List<int>();
        foreach (var document in documents)
        {
            all.AddRange(document);
            all.Add(endOfText);
        }
        Count = all.Count / (sequenceLength + 1);
        tokens = all.Take(Count * (sequenceLength + 1)).ToArray();
    }

    /// <summary>T: each sequence holds T + 1 tokens.</summary>
    public int SequenceLength { get; }

    /// <summary>Number of whole sequences.</summary>
    public int Count { get; }

    public long TokenCount => (long)Count * SequenceLength;

    public ReadOnlySpan<int> this[int index] => tokens.AsSpan(index * (SequenceLength + 1), SequenceLength + 1);

    /// <summary>The given sequences as a (B, T + 1) int64 tensor.</summary>
    public Tensor Batch(IReadOnlyList<int> indices)
    {
        var data = new long[indices.Count * (SequenceLength + 1)];
        for (int b = 0; b < indices.Count; b++)
        {
            var sequence = this[indices[b]];
            for (int t = 0; t < sequence.Length; t++) data[b * (SequenceLength + 1) + t] = sequence[t];
        }
        return tensor(data, [indices.Count, SequenceLength + 1]);
    }
}

/// <summary>
/// Which sequences make up the batch of a given step: a fresh permutation per epoch, drawn from
/// (seed, epoch) alone, so the batch of step s is the same wherever and whenever it is computed —
/// a run resumed at step s sees exactly the batches it would have seen.
/// </summary>
internal sealed class BatchSchedule
{
    private readonly int sequences;
    private readonly int batchSize;
    private readonly long seed;
    private (long Epoch, int[] Order)? cached;

    public BatchSchedule(int sequences, int batchSize, long seed)
    {
        if (sequences < 1) throw new ArgumentException("There are no sequences to draw batches from (is the corpus shorter than one sequence?).");
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), "must be at least 1");
        (this.sequences, this.batchSize, this.seed) = (sequences, batchSize, seed);
    }

    public IReadOnlyList<int> IndicesFor(long step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), "must be zero or more");
        var indices = new int[batchSize];
        for (int b = 0; b < batchSize; b++)
        {
            long position = step * batchSize + b;
            long epoch = position / sequences;
            indices[b] = At(epoch, (int)(position % sequences));
        }
        return indices;
    }

    /// <summary>Above this many windows an epoch's order is computed per position, not held as an array (memory stays flat).</summary>
    public const int MaterialisedLimit = 1 << 20;

    private int At(long epoch, int position)
        => sequences <= MaterialisedLimit ? Order(epoch)[position] : FeistelPermutation(position, sequences, seed * 1_000_003L + epoch * 7919L);

    /// <summary>
    /// A bijection of [0, n) keyed by <paramref name="key"/>: a 4-round Feistel network over the smallest even power of two
    /// ≥ n, walked until it lands inside [0, n) (cycle walking keeps it a permutation of [0, n)).
    /// </summary>
    internal static int FeistelPermutation(int position, int n, long key)
    {
        int bits = 2;
        while ((1L << bits) < n) bits += 2;
        int half = bits / 2;
        uint mask = (1u << half) - 1;
        uint x = (uint)position;
        do
        {
            uint left = x >> half, right = x & mask;
            for (int round = 0; round < 4; round++)
            {
                ulong h = unchecked((ulong)key * 0x9E3779B97F4A7C15UL ^ ((ulong)round << 56) ^ right * 0xBF58476D1CE4E5B9UL);
                h ^= h >> 31;
                h *= 0x94D049BB133111EBUL;
                h ^= h >> 29;
                (left, right) = (right, (left ^ (uint)h) & mask);
            }
            x = (left << half) | right;
        } while (x >= n);
        return (int)x;
    }

    private int[] Order(long epoch)
    {
        if (cached is { } c && c.Epoch == epoch) return c.Order;
        var order = Enumerable.Range(0, sequences).ToArray();
        new Random(unchecked((int)(seed * 1_000_003L + epoch * 7919L))).Shuffle(order);
        cached = (epoch, order);
        return order;
    }
}
