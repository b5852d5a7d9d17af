using Akka.Actor;
using Akka.Configuration;

namespace Scale.Actors.Cluster;

/// <summary>Akka settings every `scale` actor system starts from: quiet about dead letters, and shut down by the command, not by the CLR.</summary>
internal static class AkkaDefaults
{
    public static Akka.Configuration.Config Config(string logLevel = "INFO") => ConfigurationFactory.ParseString($"""
        akka.loglevel = {logLevel}
        akka.stdout-loglevel = WARNING
        akka.log-dead-letters = off
        akka.log-dead-letters-during-shutdown = off
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        """);

    /// <summary>
    /// Warnings and errors only from here on: once the loggers stop during shutdown, Akka prints what is still logged to
    /// stdout at the system's level, so an information line ("Remoting shut down.") would otherwise end a command's output.
    /// </summary>
    public static void QuietShutdown(ActorSystem system) => system.EventStream.SetLogLevel(Akka.Event.LogLevel.WarningLevel);
}
