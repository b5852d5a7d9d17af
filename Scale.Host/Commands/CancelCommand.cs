using System.ComponentModel;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>`scale cancel SWEEP --cluster SEEDS`: the sweep leaves the cluster's work queue for good; its running trials stop.</summary>
internal sealed class CancelCommand : AsyncCommand<CancelCommand.Settings>
{
    public sealed class Settings : ClusterClientSettings
    {
        [CommandArgument(0, "<SWEEP>"), Description("The sweep's name.")]
        public string Sweep { get; init; } = "";

        [CommandOption("--cluster <SEEDS>"), Description("The cluster's seeds (host:port, comma-separated). A local `scale run` is stopped with Ctrl+C instead.")]
        public string? Cluster { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        if (settings.Cluster is not { } seeds)
            throw new ArgumentException("scale cancel needs --cluster SEEDS: a local `scale run` is stopped with Ctrl+C (and resumed by running it again).");
        return await Cluster.ClusterRun.Cancel(settings.Sweep, Cluster.ClusterRun.Seeds(seeds), settings.ClientHost, settings.Tls(), cancellation);
    }
}
