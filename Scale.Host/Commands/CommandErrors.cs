using Scale.Model.Transformer;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>A command stopped by something outside the user's input (a database error, a crash in a library); the message says what to do next.</summary>
internal sealed class CommandFailedException(string message, Exception inner, int exitCode = 1) : Exception(message, inner)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>Turns the errors a user can cause into one clear line on stderr and exit code 2.</summary>
internal static class CommandErrors
{
    public static int Run(Func<int> command)
    {
        try
        {
            return command();
        }
        catch (CommandFailedException e)
        {
            Console.Error.WriteLine($"scale: {Redaction.Redact(e.Message)}");
            return e.ExitCode;
        }
        catch (Exception e) when (e is CommandAppException or ArgumentException or InvalidCheckpointException
                                      or FileNotFoundException or DirectoryNotFoundException)
        {
            Console.Error.WriteLine($"scale: {Redaction.Redact(e.Message)}");
            return 2;
        }
    }

    public static IAnsiConsole Stderr { get; } = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
}
