using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Scale.Host.Logging;

/// <summary>
/// Console log entries of one line each: the level, the source and the message, then each exception's type and message —
/// never a stack trace, which is a developer's and not an operator's (the structured log file, where a command keeps one,
/// has the whole exception). Written here because Microsoft.Extensions.Logging's console formatters print an exception
/// with its stack whatever their options.
/// </summary>
internal sealed class OneLineConsoleFormatter(IOptionsMonitor<ConsoleFormatterOptions> options) : ConsoleFormatter(FormatterName)
{
    public const string FormatterName = "scale-one-line";

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var message = logEntry.Formatter?.Invoke(logEntry.State, logEntry.Exception);
        if (string.IsNullOrEmpty(message) && logEntry.Exception is null) return;
        if (options.CurrentValue.TimestampFormat is { } format)
            textWriter.Write((options.CurrentValue.UseUtcTimestamp ? DateTime.UtcNow : DateTime.Now).ToString(format));
        textWriter.Write(Level(logEntry.LogLevel));
        textWriter.Write(": ");
        textWriter.Write(logEntry.Category);
        textWriter.Write(": ");
        textWriter.Write(OneLine(message ?? ""));
        for (var e = logEntry.Exception; e is not null; e = e.InnerException)
        {
            textWriter.Write(" — ");
            textWriter.Write(e.GetType().Name);
            textWriter.Write(": ");
            textWriter.Write(OneLine(e.Message));
        }
        textWriter.WriteLine();
    }

    /// <summary>The text up to any stack trace it carries (some sources put an exception's whole text in the message), on one line, secrets redacted.</summary>
    public static string OneLine(string text)
    {
        int stack = text.IndexOf("\n   at ", StringComparison.Ordinal);
        if (stack >= 0) text = text[..stack];
        return Commands.Redaction.Redact(string.Join(' ', text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)));
    }

    private static string Level(LogLevel level) => level switch
    {
        LogLevel.Trace => "trace",
        LogLevel.Debug => "debug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "error",
        LogLevel.Critical => "crit",
        _ => level.ToString().ToLowerInvariant(),
    };
}

internal static class OneLineConsoleLogging
{
    /// <summary>The console logger with <see cref="OneLineConsoleFormatter"/>, timestamps in <paramref name="timestampFormat"/> when given.</summary>
    public static ILoggingBuilder AddOneLineConsole(this ILoggingBuilder logging, string? timestampFormat = null)
        => logging.AddConsole(o => o.FormatterName = OneLineConsoleFormatter.FormatterName)
                  .AddConsoleFormatter<OneLineConsoleFormatter, ConsoleFormatterOptions>(o => o.TimestampFormat = timestampFormat);
}
