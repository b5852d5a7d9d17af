using Akka.Actor;
using Akka.Serialization;
using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

/// <summary>A node's serializers as its cluster configuration sets them: Akka's default type-name serializer is not reachable.</summary>
[Trait("Category", "FaultInjection")]
public sealed class DefaultSerializerTests() : Akka.TestKit.Xunit2.TestKit(
    new ClusterConfig("127.0.0.1", 0, [], ["worker"]).ToConfig(), "default-serializer")
{
    private sealed record NotAScaleMessage(string Text);

    [Fact]
    public void A_message_without_a_serializer_of_its_own_is_refused_and_a_type_name_from_a_peer_is_never_read()
    {
        var serialization = Sys.Serialization;

        var unbound = serialization.FindSerializerFor(new NotAScaleMessage("x"));
        Assert.IsType<RefusingDefaultSerializer>(unbound);
        Assert.Throws<System.Runtime.Serialization.SerializationException>(() => unbound.ToBinary(new NotAScaleMessage("x")));
        // What a peer would send to have this node build a type of its choosing: serializer 1 and a CLR type name.
        var payload = "{\"$type\":\"System.IO.FileInfo, System.IO.FileSystem\",\"OriginalPath\":\"/etc/passwd\"}"u8.ToArray();
        Assert.ThrowsAny<Exception>(() => serialization.Deserialize(payload, 1, "System.IO.FileInfo, System.IO.FileSystem"));
        // Scale's own messages keep their serializer.
        Assert.IsType<WireSerializer>(serialization.FindSerializerFor(new RequestWork("w")));
        Assert.Equal(new RequestWork("w"), serialization.Deserialize(serialization.FindSerializerFor(new RequestWork("w")).ToBinary(new RequestWork("w")),
                                                                  WireSerializer.Id, "request-work.v1"));
    }

    [Fact]
    public void A_failure_crosses_as_its_kind_and_message_and_one_naming_an_exception_type_is_refused()
    {
        var serialization = Sys.Serialization;
        var failure = new Status.Failure(new ArgumentException("No sweep 'x' was submitted to this cluster."));

        var ours = serialization.FindSerializerFor(failure);
        Assert.IsType<WireSerializer>(ours);
        var back = Assert.IsType<Status.Failure>(serialization.Deserialize(ours.ToBinary(failure), WireSerializer.Id, "failure.v1"));
        Assert.IsType<ArgumentException>(back.Cause);
        Assert.Equal("No sweep 'x' was submitted to this cluster.", back.Cause.Message);
        var other = (Status.Failure)serialization.Deserialize(ours.ToBinary(new Status.Failure(new NotSupportedException("n"))), WireSerializer.Id, "failure.v1");
        Assert.IsType<InvalidOperationException>(other.Cause);

        // Akka's own form (what a stock peer sends): the exception's type name for this node to instantiate. Refused.
        using var stock = ActorSystem.Create("stock", "akka.actor.provider = remote\nakka.remote.dot-netty.tcp.port = 0\nakka.remote.dot-netty.tcp.hostname = 127.0.0.1");
        var akkaForm = new Akka.Remote.Serialization.MiscMessageSerializer((ExtendedActorSystem)stock).ToBinary(failure);
        var refused = Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serialization.Deserialize(akkaForm, 16, GuardedMiscSerializer.FailureManifest));
        Assert.Contains("Status.Failure in Akka's form", refused.Message);
        // Akka's other small messages are read as before.
        var identify = new Identify(42);
        var misc = serialization.FindSerializerFor(identify);
        Assert.IsType<GuardedMiscSerializer>(misc);
        Assert.Equal(42, ((Identify)serialization.Deserialize(misc.ToBinary(identify), 16, ((SerializerWithStringManifest)misc).Manifest(identify))).MessageId);
    }

    [Fact]
    public void A_system_message_carrying_an_exception_type_is_refused_and_death_watch_still_reads()
    {
        var serialization = Sys.Serialization;
        var self = (IInternalActorRef)TestActor;
        var watch = new Akka.Dispatch.SysMsg.Watch(self, self);
        var guarded = serialization.FindSerializerFor(watch);
        Assert.IsType<GuardedSystemMessageSerializer>(guarded);

        // What a stock peer sends: the child's failure with its exception's type for this node to instantiate. Refused.
        using var stock = ActorSystem.Create("stock-sys", "akka.actor.provider = remote\nakka.remote.dot-netty.tcp.port = 0\nakka.remote.dot-netty.tcp.hostname = 127.0.0.1");
        var akkaForm = new Akka.Remote.Serialization.SystemMessageSerializer((ExtendedActorSystem)stock);
        var failed = akkaForm.ToBinary(new Akka.Dispatch.SysMsg.Failed(self, new InvalidOperationException("boom"), 1));
        Assert.IsType<InvalidOperationException>(((Akka.Dispatch.SysMsg.Failed)akkaForm.FromBinary(failed, typeof(Akka.Dispatch.SysMsg.Failed))).Cause);   // Akka's own reads it
        var refused = Assert.Throws<System.Runtime.Serialization.SerializationException>(
            () => serialization.Deserialize(failed, guarded.Identifier, typeof(Akka.Dispatch.SysMsg.Failed)));
        Assert.Contains("refused a remote Failed", refused.Message);
        Assert.Throws<System.Runtime.Serialization.SerializationException>(
            () => serialization.Deserialize(akkaForm.ToBinary(new Akka.Dispatch.SysMsg.Recreate(new InvalidOperationException("boom"))), guarded.Identifier, typeof(Akka.Dispatch.SysMsg.Recreate)));

        // Death watch crosses between nodes and reads as before.
        var back = Assert.IsType<Akka.Dispatch.SysMsg.Watch>(serialization.Deserialize(guarded.ToBinary(watch), guarded.Identifier, typeof(Akka.Dispatch.SysMsg.Watch)));
        Assert.Equal(self.Path, back.Watchee.Path);
    }
}
