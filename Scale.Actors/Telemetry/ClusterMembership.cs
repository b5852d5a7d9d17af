using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;

namespace Scale.Actors.Telemetry;

/// <summary>One member as this process sees it.</summary>
internal sealed record MemberView(string Address, IReadOnlyList<string> Roles, string Status);

/// <summary>
/// The cluster's membership as this process sees it: every member with its status, the unreachable ones, and the oldest
/// Up seed (where the sweep manager, a singleton on the seed role, runs).
/// </summary>
internal sealed record MembershipView(IReadOnlyList<MemberView> Members, IReadOnlyList<string> Unreachable)
{
    public static readonly MembershipView Empty = new([], []);

    public string? OldestSeed { get; init; }
}

/// <summary>
/// This process's view of its Akka.Cluster membership, kept from the cluster's member and reachability events (the
/// events, not <c>Cluster.State</c>, which lags): on one machine the process is the only member; on a cluster, the
/// real membership. Read from any thread through <see cref="Current"/>.
/// </summary>
internal sealed class ClusterMembership
{
    private MembershipView current = MembershipView.Empty;

    public MembershipView Current => Volatile.Read(ref current);

    /// <summary>Starts following <paramref name="system"/>'s cluster (which must use the cluster provider).</summary>
    public static ClusterMembership Follow(ActorSystem system, string name = "cluster-membership")
    {
        var membership = new ClusterMembership();
        system.ActorOf(Props.Create(() => new Listener(membership)), name);
        return membership;
    }

    private sealed class Listener : ReceiveActor
    {
        private readonly ClusterMembership target;
        private ImmutableSortedDictionary<Address, Member> members = ImmutableSortedDictionary<Address, Member>.Empty.WithComparers(Comparer<Address>.Create((a, b) => string.CompareOrdinal(a.ToString(), b.ToString())));
        private ImmutableHashSet<Address> unreachable = [];

        public Listener(ClusterMembership target)
        {
            this.target = target;
            Receive<ClusterEvent.MemberRemoved>(e => Update(members.Remove(e.Member.Address), unreachable.Remove(e.Member.Address)));
            // Remove, then add: a Member equals another by its address alone, so SetItem would keep the old status.
            Receive<ClusterEvent.IMemberEvent>(e => Update(members.Remove(e.Member.Address).Add(e.Member.Address, e.Member), unreachable));
            Receive<ClusterEvent.UnreachableMember>(e => Update(members, unreachable.Add(e.Member.Address)));
            Receive<ClusterEvent.ReachableMember>(e => Update(members, unreachable.Remove(e.Member.Address)));
            Receive<ClusterEvent.IClusterDomainEvent>(_ => { });
        }

        protected override void PreStart()
            => Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
                                                                   typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.IReachabilityEvent));

        protected override void PostStop() => Akka.Cluster.Cluster.Get(Context.System).Unsubscribe(Self);

        private void Update(ImmutableSortedDictionary<Address, Member> nextMembers, ImmutableHashSet<Address> nextUnreachable)
        {
            (members, unreachable) = (nextMembers, nextUnreachable);
            Volatile.Write(ref target.current, new MembershipView(
                members.Values.Select(m => new MemberView(m.Address.ToString(), m.Roles.Order().ToList(), m.Status.ToString().ToLowerInvariant())).ToList(),
                unreachable.Select(a => a.ToString()).Order().ToList())
            {
                OldestSeed = members.Values.Where(m => m.Status == MemberStatus.Up && m.HasRole(Cluster.ClusterConfig.SeedRole))
                    .Aggregate((Member?)null, (oldest, m) => oldest is null || m.IsOlderThan(oldest) ? m : oldest)?.Address.ToString(),
            });
        }
    }
}
