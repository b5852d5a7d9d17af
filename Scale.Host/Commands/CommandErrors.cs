using Scale.Model.Transformer;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>Turns the errors a user can cause into one clear line on stderr and exit code 2.</summary>
internal static class CommandErrors
{
    public static int Run(Func<int> command)
    {
        try
        {
            return command();
        }
        catch (Exception e) when (e is CommandAppException or ArgumentException or InvalidCheckpointException
                                      or FileNotFoundException or DirectoryNotFoundException)
        {
            Console.Error.WriteLine($"scale: {e.Message}");
            return 2;
        }
    }

    public static IAnsiConsole Stderr { get; } = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
}
