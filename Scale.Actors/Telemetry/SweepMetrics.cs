using System.Diagnostics.Metrics;

namespace Scale.Actors.Telemetry;

/// <summary>Scale's own instruments (System.Diagnostics.Metrics); the host exports them (OpenTelemetry, Prometheus).</summary>
internal static class SweepMetrics
{
    public const string MeterName = "Scale";

    private static readonly Meter Meter = new(MeterName);

    /// <summary>Seconds from a coordinator's decision to its events being durable in the journal.</summary>
    public static readonly Histogram<double> JournalWriteSeconds =
        Meter.CreateHistogram<double>("scale_journal_write_seconds", description: "Time to persist a sweep coordinator's events in the journal.");
}
