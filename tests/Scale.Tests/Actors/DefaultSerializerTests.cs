using Akka.Actor;
using Akka.Serialization;
using Scale.Actors.Cluster;
using Scale.Actors.Sweeps;

namespace Scale.Tests.Actors;

/// <summary>A node's serializers as its cluster configuration sets them: Akka's default type-name serializer is not reachable.</summary>
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
}
