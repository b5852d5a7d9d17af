using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Training;

/// <summary>
/// Lock-step groups on one device: trials that read the same batches (the same data, seed and batch size) and whose
/// original stream is the frozen base's below their first W12 share one no-grad base forward per batch
/// (<see cref="BaseTrace"/>); each trial then computes only its expansion on top. A group steps together: only its
/// members at the group's lowest step go on, so a member that joined behind catches up alone while the others wait, and
/// from then on every step's base forward is computed once, by the first member to reach it, for all of them.
/// Within a step the members take turns (<see cref="LockStepMember.Turn"/>): one computes at a time, on the device's whole
/// thread budget, so one member's activations are alive at a time instead of all of theirs (measured: the same time as a
/// thread each, half the memory; docs/bench.md).
/// Checkpoints, scores, retries and resume stay each trial's own, and a trial's step is the same bits in a group or alone.
/// </summary>
internal sealed class LockStepGroups
{
    /// <summary>How far behind or ahead of a group a trial may join it (steps): beyond, waiting for it costs more than sharing gains.</summary>
    public const long MaxLag = 32;

    private readonly object gate = new();   // a monitor: members wait on it for the group's lowest step
    private readonly List<Group> groups = [];

    /// <summary>
    /// Threads the base's forward runs on (the device's budget; null: the computing trial's own). The group's other members
    /// wait for it, so it may use their threads too.
    /// </summary>
    public int? TraceThreads { get; init; }

    /// <summary>Base forwards computed and base forwards shared (taken from another member's trace), since this object was made.</summary>
    public long TracesComputed { get; private set; }
    public long TracesShared { get; private set; }

    /// <summary>Members now in groups of more than one.</summary>
    public int GroupedMembers
    {
        get
        {
            lock (gate) return groups.Where(g => g.Members.Count > 1).Sum(g => g.Members.Count);
        }
    }

    /// <summary>
    /// Joins (or starts) the group of trials with <paramref name="key"/> (what makes their batches equal) whose members take
    /// <paramref name="depth"/> blocks from the trace, as a member that will next train step <paramref name="step"/>.
    /// </summary>
    public LockStepMember Join(Decoder baseModel, string key, int depth, long step)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        lock (gate)
        {
            var group = groups.FirstOrDefault(g => g.Key == key && g.Depth == depth && g.Base == baseModel
                                                   && (g.Members.Count == 0 || Math.Abs(g.Members.Values.Min() - step) <= MaxLag));
            if (group is null) groups.Add(group = new Group(key, depth, baseModel));
            var member = new LockStepMember(this, group);
            group.Members[member] = step;
            return member;
        }
    }

    internal BaseTrace TraceFor(LockStepMember member, long step, Tensor inputs, CancellationToken cancellation)
    {
        var group = member.Group;
        Entry entry;
        lock (gate)
        {
            if (group.Members[member] != step) throw new InvalidOperationException($"lock-step member asked for step {step}, but its next step is {group.Members[member]}.");
            while (true)
            {
                cancellation.ThrowIfCancellationRequested();
                if (step == group.Members.Values.Min())
                {
                    if (!group.Entries.TryGetValue(step, out entry!))
                    {
                        group.Entries[step] = entry = new Entry();
                        break;   // this member computes it, outside the lock
                    }
                    if (entry.Trace is { } ready)
                    {
                        TracesShared++;
                        return Checked(ready, inputs);
                    }
                }
                Monitor.Wait(gate, TimeSpan.FromMilliseconds(250));   // woken by every step's end; the timeout only re-checks cancellation
            }
        }
        try
        {
            BaseTrace trace;
            using (Turn(member, cancellation))
                trace = group.Base.Trace(inputs, group.Depth);
            lock (gate)
            {
                entry.Trace = trace;
                TracesComputed++;
                Monitor.PulseAll(gate);
            }
            return trace;
        }
        catch
        {
            lock (gate)
            {
                group.Entries.Remove(step);   // another member computes it again
                Monitor.PulseAll(gate);
            }
            throw;
        }
    }

    /// <summary>The group's turn: one member computes at a time, on the device's thread budget; held until disposed.</summary>
    internal IDisposable Turn(LockStepMember member, CancellationToken cancellation)
    {
        member.Group.Turn.Wait(cancellation);
        try
        {
            var boost = TraceThreads is { } threads ? Devices.BoostThreads(threads) : null;
            return new TurnHeld(member.Group.Turn, boost);
        }
        catch
        {
            member.Group.Turn.Release();
            throw;
        }
    }

    private sealed class TurnHeld(SemaphoreSlim turn, IDisposable? boost) : IDisposable
    {
        private int released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref released, 1) == 1) return;
            boost?.Dispose();
            turn.Release();
        }
    }

    private static BaseTrace Checked(BaseTrace trace, Tensor inputs)
        => trace.IsFor(inputs) ? trace : throw new InvalidOperationException(
            "a lock-step group's members read different batches at one step: the base's trace does not match this trial's inputs.");

    internal void Stepped(LockStepMember member, long step)
    {
        lock (gate)
        {
            member.Group.Members[member] = step + 1;
            Release(member.Group);
        }
    }

    internal void Leave(LockStepMember member)
    {
        lock (gate)
        {
            var group = member.Group;
            group.Members.Remove(member);
            Release(group);
            if (group.Members.Count == 0) groups.Remove(group);
        }
    }

    /// <summary>Frees the traces no member will read again (steps below every member's next) and wakes the waiting members.</summary>
    private void Release(Group group)
    {
        long lowest = group.Members.Count == 0 ? long.MaxValue : group.Members.Values.Min();
        foreach (var step in group.Entries.Keys.Where(s => s < lowest).ToList())
        {
            group.Entries[step].Trace?.Dispose();
            group.Entries.Remove(step);
        }
        Monitor.PulseAll(gate);
    }

    internal sealed class Group(string key, int depth, Decoder baseModel)
    {
        public string Key { get; } = key;
        public int Depth { get; } = depth;
        public Decoder Base { get; } = baseModel;
        public Dictionary<LockStepMember, long> Members { get; } = new(ReferenceEqualityComparer.Instance);
        public Dictionary<long, Entry> Entries { get; } = [];
        /// <summary>Held by the member that computes: the members' steps and the base's trace run one at a time.</summary>
        public SemaphoreSlim Turn { get; } = new(1, 1);
    }

    internal sealed class Entry
    {
        public BaseTrace? Trace;
    }
}

/// <summary>One trial's place in a lock-step group: the base's trace for each step, then word that the step is done. Dispose to leave.</summary>
internal sealed class LockStepMember : IDisposable
{
    private readonly LockStepGroups owner;
    private bool left;

    internal LockStepMember(LockStepGroups owner, LockStepGroups.Group group) => (this.owner, Group) = (owner, group);

    internal LockStepGroups.Group Group { get; }

    /// <summary>
    /// The base's trace of step <paramref name="step"/> (this member's next) on <paramref name="inputs"/> (B, T): waits while
    /// other members are behind, then takes the trace another member computed or computes it. Owned by the group.
    /// </summary>
    public BaseTrace TraceFor(long step, Tensor inputs, CancellationToken cancellation = default) => owner.TraceFor(this, step, inputs, cancellation);

    /// <summary>
    /// The group's turn for this member's step (take it once the step's trace is in hand: <see cref="TraceFor"/> waits for the
    /// others, who need the turn to catch up): one member computes at a time, on the device's whole thread budget.
    /// </summary>
    public IDisposable Turn(CancellationToken cancellation = default) => owner.Turn(this, cancellation);

    /// <summary>
    /// This member's step <paramref name="step"/> of <paramref name="session"/> on <paramref name="batch"/>: the base's trace first
    /// (waiting, without the turn, for members behind), then the step itself in the group's turn, alone on the device's threads.
    /// </summary>
    public StepResult TrainStep(TrainingSession session, Tensor batch, long step, CancellationToken cancellation = default)
    {
        IDisposable? turn = null;
        try
        {
            return session.TrainStep([batch], inputs =>
            {
                var trace = TraceFor(step, inputs, cancellation);
                turn = Turn(cancellation);
                return trace;
            });
        }
        finally
        {
            turn?.Dispose();
        }
    }

    /// <summary>This member has taken step <paramref name="step"/>: its trace may be freed once every member has.</summary>
    public void Stepped(long step) => owner.Stepped(this, step);

    public void Dispose()
    {
        if (left) return;
        left = true;
        owner.Leave(this);
    }
}
