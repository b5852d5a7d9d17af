using System.Net;
using System.Net.Sockets;

namespace Scale.Tests.Persistence;

/// <summary>
/// A TCP relay on 127.0.0.1 in front of a real server, that can cut the network: while cut, open connections are
/// reset and new ones are accepted and reset at once — to its clients the server is unreachable.
/// </summary>
public sealed class TcpGate : IDisposable
{
    private readonly TcpListener listener = new(IPAddress.Loopback, 0);
    private readonly string targetHost;
    private readonly int targetPort;
    private readonly List<TcpClient> open = new();
    private readonly CancellationTokenSource stop = new();
    private volatile bool cut;

    public TcpGate(string targetHost, int targetPort)
    {
        (this.targetHost, this.targetPort) = (targetHost, targetPort);
        listener.Start();
        _ = Task.Run(AcceptLoop);
    }

    public int Port => ((IPEndPoint)listener.LocalEndpoint).Port;

    public void Cut()
    {
        cut = true;
        lock (open)
        {
            foreach (var client in open) Reset(client);
            open.Clear();
        }
    }

    public void Restore() => cut = false;

    private static void Reset(TcpClient client)
    {
        try
        {
            client.Client.LingerState = new LingerOption(true, 0);
            client.Close();
        }
        catch (Exception)
        {
            // already closed
        }
    }

    private async Task AcceptLoop()
    {
        while (!stop.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await listener.AcceptTcpClientAsync(stop.Token);
            }
            catch (Exception)
            {
                return;
            }
            if (cut)
            {
                Reset(inbound);
                continue;
            }
            var outbound = new TcpClient();
            try
            {
                await outbound.ConnectAsync(targetHost, targetPort, stop.Token);
            }
            catch (Exception)
            {
                Reset(inbound);
                continue;
            }
            lock (open)
            {
                open.Add(inbound);
                open.Add(outbound);
            }
            _ = Pump(inbound, outbound);
            _ = Pump(outbound, inbound);
        }
    }

    private async Task Pump(TcpClient from, TcpClient to)
    {
        try
        {
            await from.GetStream().CopyToAsync(to.GetStream(), stop.Token);
        }
        catch (Exception)
        {
            // the other side or the gate closed the connection
        }
        Reset(from);
        Reset(to);
    }

    public void Dispose()
    {
        stop.Cancel();
        listener.Stop();
        Cut();
    }
}
