using System.Net;
using System.Net.Sockets;

namespace Scale.Tests;

/// <summary>A TCP port on 127.0.0.1 that nothing listens on right now, for a child process that must be told its port.</summary>
internal static class FreePorts
{
    public static int Next()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
