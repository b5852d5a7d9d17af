using System.Threading.Channels;
using Akka.Actor;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;

namespace Scale.Host.Sweeps;

/// <summary>Forwards trial progress, notices and sweep events from the event stream to the command's display loop.</summary>
internal sealed class ViewFeed : ReceiveActor
{
    public ViewFeed(ChannelWriter<object> output, Action<object>? observe)
    {
        ReceiveAny(message =>
        {
            observe?.Invoke(message);
            output.TryWrite(message);
        });
    }

    public static Props Props(ChannelWriter<object> output, Action<object>? observe = null)
        => Akka.Actor.Props.Create(() => new ViewFeed(output, observe));

    protected override void PreStart()
    {
        foreach (var type in new[] { typeof(TrialProgress), typeof(TrialNotice), typeof(ISweepEvent) })
            Context.System.EventStream.Subscribe(Self, type);
    }
}
