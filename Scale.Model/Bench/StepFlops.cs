namespace Scale.Model.Bench;

/// <summary>
/// The arithmetic of one training step, per token: the floating-point operations of the matrix products of the forward
/// and backward passes of a method on the bench configuration (element-wise work — norms, softmax, SiLU, the optimiser —
/// is left out: it is a few percent of the products here). A product of an (out × in) weight over a token costs 2·in·out in
/// the forward pass; in the backward pass the same again for the input's gradient where something trained lies
/// upstream (the input requires a gradient), and again for the weight's where the weight trains. Attention costs
/// 2·T·hs per head and token for QKᵀ and as much for the weighted sum, and twice that backward where its inputs need
/// gradients. What a method skips follows from what trains: Preserve's base stream needs no backward at all; Adapt's
/// W12 puts every base product on the backward path; depth expansion's backward starts at its first inserted block.
/// </summary>
internal static class StepFlops
{
    public sealed record Cost(double Forward, double Backward)
    {
        public double Total => Forward + Backward;
        public static Cost operator +(Cost a, Cost b) => new(a.Forward + b.Forward, a.Backward + b.Backward);
        public static Cost operator *(Cost c, int times) => new(c.Forward * times, c.Backward * times);
        public static readonly Cost None = new(0, 0);
    }

    /// <summary>
    /// FLOPs per token of one step of <paramref name="method"/>; with <paramref name="baseForwardShared"/>, a lock-step member's
    /// step, whose base forward the group computes once (<see cref="BaseForward"/>).
    /// </summary>
    public static Cost PerToken(string method, BenchSettings settings, bool baseForwardShared = false)
    {
        var m = settings.Model;
        int d = m.HiddenSize, f = m.IntermediateSize, v = m.VocabSize, layers = m.NumLayers, t = settings.SequenceLength;
        int hs = m.HeadDim, heads = m.NumHeads, kv = m.NumKvHeads, du = settings.HeadsUp * hs, fu = settings.FfnUp;
        static Cost Linear(int input, int output, bool inputNeedsGrad, bool weightTrains)
        {
            double forward = 2.0 * input * output;
            return new Cost(forward, (inputNeedsGrad ? forward : 0) + (weightTrains ? forward : 0));
        }
        Cost Attention(int n, bool needsGrad) => new(4.0 * t * hs * n, needsGrad ? 8.0 * t * hs * n : 0);
        // A plain block: q, k, v read the block's input; attention, o, gate, up and down work on what q, k, v made.
        Cost Block(bool inputNeedsGrad, bool innerNeedsGrad, bool trains)
            => Linear(d, heads * hs, inputNeedsGrad, trains) + Linear(d, kv * hs, inputNeedsGrad, trains) * 2 + Attention(heads, innerNeedsGrad)
               + Linear(heads * hs, d, innerNeedsGrad, trains) + Linear(d, f, innerNeedsGrad, trains) * 2 + Linear(f, d, innerNeedsGrad, trains);
        var total = Cost.None;
        switch (method)
        {
            case "full":   // the embedding trains: every activation needs its gradient
                for (int i = 0; i < layers; i++) total += Block(true, true, true);
                return total + Linear(d, v, true, true);
            case "lora":
            {
                int r = settings.Lora.Rank;
                for (int i = 0; i < layers; i++)
                {
                    total += Block(i > 0, true, false);   // the base's products; from block 0's adapters on, all on the backward path
                    foreach (var target in settings.Lora.TargetModules)
                    {
                        var (input, output, first) = target switch
                        {
                            "q_proj" => (d, heads * hs, true), "k_proj" or "v_proj" => (d, kv * hs, true),
                            "o_proj" => (heads * hs, d, false), "gate_proj" or "up_proj" => (d, f, false), _ => (f, d, false),
                        };
                        total += Linear(input, r, i > 0 || !first, true) + Linear(r, output, true, true);   // A, then B
                    }
                }
                return total + Linear(d, v, true, false);
            }
            case "depth":
            {
                bool upstream = false;
                for (int i = 0; i < layers; i++)
                {
                    total += Block(upstream, upstream, false);
                    if ((i + 1) % settings.DepthEvery != 0) continue;
                    total += Block(upstream, true, true);
                    upstream = true;
                }
                return total + Linear(d, v, upstream, false);
            }
            case "preserve" or "adapt" or "route":
            {
                bool w12 = method != "preserve";
                if (!baseForwardShared || w12) total += BaseForward(settings);
                if (w12)   // W12 puts the base's products on the backward path from block 0's q, k, v on
                {
                    for (int i = 0; i < layers; i++) total += new Cost(0, Block(i > 0, true, false).Backward);
                    total += new Cost(0, Linear(d, v, true, false).Backward);
                }
                // Each map's new blocks: W21 (original input → new output), W22 (new → new), and W12 (new → original) in Adapt.
                Cost Widened(int input, int output, int inputUp, int outputUp, bool originalNeedsGrad)
                {
                    var c = Linear(input, outputUp, originalNeedsGrad, true) + Linear(inputUp, outputUp, true, true);
                    return w12 ? c + Linear(inputUp, output, true, true) : c;
                }
                for (int i = 0; i < layers; i++)
                    total += Widened(d, heads * hs, du, du, w12 && i > 0) + Widened(d, kv * hs, du, du, w12 && i > 0) * 2 + Attention(settings.HeadsUp, true)
                             + Widened(heads * hs, d, du, du, w12) + Widened(d, f, du, fu, w12) * 2 + Widened(f, d, fu, du, w12);
                return total + Linear(du, v, true, true);   // H_u
            }
            default: throw new ArgumentException($"no cost model for method '{method}'.");
        }
    }

    /// <summary>The frozen base's forward pass per token, without autograd: what a lock-step group computes once for all its members.</summary>
    public static Cost BaseForward(BenchSettings settings)
    {
        var m = settings.Model;
        int d = m.HiddenSize, f = m.IntermediateSize, hs = m.HeadDim;
        double block = 2.0 * d * (m.NumHeads * hs + 2 * m.NumKvHeads * hs) + 4.0 * settings.SequenceLength * hs * m.NumHeads
                       + 2.0 * m.NumHeads * hs * d + 3 * 2.0 * d * f;
        return new Cost(block * m.NumLayers + 2.0 * d * m.VocabSize, 0);
    }
}
