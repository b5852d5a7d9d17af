using System.ComponentModel;
using Scale.Model.Data;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>
/// `scale corpus [NAME…]`: prepares the built-in real-text corpora (Debian's GIMP and LibreOffice help in English,
/// German and Korean) under the data directory, as the text experiments do on first use, and prints their counts.
/// </summary>
internal sealed class CorpusCommand : Command<CorpusCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "[NAME]"), Description("Corpora to prepare (default: all of them).")]
        public string[] Names { get; init; } = [];

        [CommandOption("--data-dir <DIR>"), Description("The data directory: corpora go to DIR/corpora/NAME."), DefaultValue("./scale-data")]
        public string DataDir { get; init; } = "./scale-data";

        [CommandOption("--offline"), Description("Never fetch a package: use installed ones or .deb files in DIR/corpora/debs.")]
        public bool Offline { get; init; }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        var names = settings.Names.Length > 0 ? settings.Names : DebianHelpCorpora.Known.Select(c => c.Name).ToArray();
        foreach (var name in names) DebianHelpCorpora.Find(name);   // every name checked before anything is fetched
        foreach (var name in names)
        {
            cancellation.ThrowIfCancellationRequested();
            var folder = DebianHelpCorpora.Ensure(name, settings.DataDir, download: !settings.Offline, report: line => Console.Error.WriteLine($"corpus: {line}"));
            var counts = DebianHelpCorpora.Counts(folder);
            Console.WriteLine($"{name} ({counts.Language}): {counts.Documents:N0} documents, {counts.Characters:N0} characters, " +
                              $"{counts.ParagraphsKept:N0} paragraphs kept and {counts.ParagraphsLeftOut:N0} left out, from {counts.Pages:N0} pages: {folder}");
        }
        return 0;
    }
}
