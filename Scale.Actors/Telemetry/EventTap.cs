using Akka.Actor;

namespace Scale.Actors.Telemetry;

/// <summary>
/// The one way a read side hears a node: an actor subscribed to the given types on the system's event stream (trial
/// progress and notices, sweep events, journal faults) that hands each message to a callback, in order, on its own
/// thread. The callback must be quick and must not block: it records, or writes to a channel.
/// </summary>
internal static class EventTap
{
    /// <summary>Starts a tap named <paramref name="name"/> on <paramref name="system"/>.</summary>
    public static IActorRef Start(ActorSystem system, string name, Action<object> receive, params Type[] types)
        => types.Length == 0
            ? throw new ArgumentException("An event tap needs at least one type to hear.", nameof(types))
            : system.ActorOf(Props.Create(() => new Listener(receive, types)), name);

    private sealed class Listener : ReceiveActor
    {
        private readonly Type[] types;

        public Listener(Action<object> receive, Type[] types)   // public: Akka builds the actor through its constructor
        {
            this.types = types;
            ReceiveAny(receive);
        }

        protected override void PreStart()
        {
            foreach (var type in types) Context.System.EventStream.Subscribe(Self, type);
        }
    }
}
