using System.Diagnostics;

namespace Scale.Model.Data;

/// <summary>A corpus made from one of Debian's help packages: its name, the package, where the package puts its pages, and their language.</summary>
internal sealed record HelpCorpus(string Name, string Package, string Tree, TextLanguage Language);

/// <summary>
/// The real-text corpora of the built-in text experiments: the GIMP and LibreOffice help in English, German and Korean,
/// from Debian's packages. Two programs' manuals, so a pair of one's English with the other's Korean or German is a
/// language shift whose two sides are not translations of each other (docs/experiments.md). Each corpus is
/// <c>{data}/corpora/{name}</c>, prepared on first use: the package's pages are taken from a .deb in
/// <c>{data}/corpora/debs</c> if one is there, else from the installed package, else from a .deb fetched with
/// <c>apt-get download</c> (no root needed: nothing is installed), unpacked with <c>dpkg-deb</c> and extracted by
/// <see cref="HelpPages"/>.
/// </summary>
internal static class DebianHelpCorpora
{
    /// <summary>Where installed packages are looked for (default "/"): a chroot or an unpacked tree can stand in for the system.</summary>
    public const string RootVariable = "SCALE_DEBIAN_ROOT";

    public static readonly IReadOnlyList<HelpCorpus> Known =
    [
        new("gimp-help-en", "gimp-help-en", "usr/share/gimp/2.0/help/en", TextLanguage.English),
        new("gimp-help-de", "gimp-help-de", "usr/share/gimp/2.0/help/de", TextLanguage.German),
        new("gimp-help-ko", "gimp-help-ko", "usr/share/gimp/2.0/help/ko", TextLanguage.Korean),
        new("libreoffice-help-en-us", "libreoffice-help-en-us", "usr/share/libreoffice/help/en-US", TextLanguage.English),
        new("libreoffice-help-de", "libreoffice-help-de", "usr/share/libreoffice/help/de", TextLanguage.German),
        new("libreoffice-help-ko", "libreoffice-help-ko", "usr/share/libreoffice/help/ko", TextLanguage.Korean),
    ];

    public static HelpCorpus Find(string name)
        => Known.FirstOrDefault(c => c.Name == name)
           ?? throw new ArgumentException($"unknown corpus '{name}'; the built-in corpora are {string.Join(", ", Known.Select(c => c.Name))}.");

    public static string Folder(string dataDirectory, string name) => Path.Combine(Path.GetFullPath(dataDirectory), "corpora", name);

    public static string DebFolder(string dataDirectory) => Path.Combine(Path.GetFullPath(dataDirectory), "corpora", "debs");

    /// <summary>What the extraction of a prepared corpus counted.</summary>
    public static HelpCorpusCounts Counts(string folder)
        => System.Text.Json.JsonSerializer.Deserialize<HelpCorpusCounts>(File.ReadAllText(Path.Combine(folder, HelpPages.CountsFile)))
           ?? throw new InvalidDataException($"{folder}: empty {HelpPages.CountsFile}.");

    /// <summary>Whether the corpus is prepared (its counts file is written last, with the folder moved into place whole).</summary>
    public static bool IsPrepared(string dataDirectory, string name) => File.Exists(Path.Combine(Folder(dataDirectory, name), HelpPages.CountsFile));

    /// <summary>
    /// The corpus's folder, prepared first if it is not (<paramref name="download"/> false: never fetch a package). One
    /// process prepares it at a time; the others wait and then use it. A package that is nowhere to be had, or that holds
    /// no text of its language, is refused in one line saying what to install.
    /// </summary>
    public static string Ensure(string name, string dataDirectory, bool download = true, Action<string>? report = null)
    {
        var corpus = Find(name);
        var folder = Folder(dataDirectory, name);
        if (IsPrepared(dataDirectory, name)) return folder;
        Directory.CreateDirectory(Path.GetDirectoryName(folder)!);
        using var exclusive = Lock(folder + ".lock");
        if (IsPrepared(dataDirectory, name)) return folder;
        var (tree, cleanup) = Source(corpus, dataDirectory, download, report);
        try
        {
            report?.Invoke($"{name}: extracting the {corpus.Language} text of {tree}");
            HelpPages.Extract(tree, corpus.Language, folder, name);
            return folder;
        }
        finally
        {
            cleanup();
        }
    }

    private static (string Tree, Action Cleanup) Source(HelpCorpus corpus, string dataDirectory, bool download, Action<string>? report)
    {
        var debs = DebFolder(dataDirectory);
        string? Deb() => Directory.Exists(debs)
            ? Directory.EnumerateFiles(debs, corpus.Package + "_*.deb").Order(StringComparer.Ordinal).LastOrDefault()
            : null;
        var deb = Deb();
        if (deb is null)
        {
            var installed = Path.Combine(Environment.GetEnvironmentVariable(RootVariable) is { Length: > 0 } root ? root : "/", corpus.Tree);
            if (Directory.Exists(installed)) return (installed, () => { });
        }
        bool fetched = false;
        if (deb is null && download)
        {
            Directory.CreateDirectory(debs);
            report?.Invoke($"{corpus.Name}: fetching Debian's package {corpus.Package} (apt-get download)");
            var (ok, output) = Run("apt-get", debs, "download", corpus.Package);
            deb = Deb();
            fetched = deb is not null;
            if (!ok || deb is null)
                throw new ArgumentException($"{corpus.Name}: {corpus.Package} is not installed and `apt-get download {corpus.Package}` failed ({output}); " +
                                            $"install it (apt-get install {corpus.Package}) or put its .deb in {debs}.");
        }
        if (deb is null)
            throw new ArgumentException($"{corpus.Name}: {corpus.Package} is not installed and no .deb of it is in {debs}; " +
                                        $"install it (apt-get install {corpus.Package}) or put its .deb there.");
        var unpacked = Path.Combine(debs, corpus.Package + ".unpacked");
        if (Directory.Exists(unpacked)) Directory.Delete(unpacked, recursive: true);
        var (unpackedOk, unpackOutput) = Run("dpkg-deb", debs, "-x", deb, unpacked);
        if (!unpackedOk)
            throw new ArgumentException($"{corpus.Name}: cannot unpack {deb} with dpkg-deb ({unpackOutput}); install dpkg, or install {corpus.Package} itself.");
        var tree = Path.Combine(unpacked, corpus.Tree);
        if (!Directory.Exists(tree))
        {
            Directory.Delete(unpacked, recursive: true);
            throw new ArgumentException($"{corpus.Name}: {deb} has no {corpus.Tree}; is it {corpus.Package}?");
        }
        return (tree, () =>
        {
            Directory.Delete(unpacked, recursive: true);
            if (fetched) File.Delete(deb);
        });
    }

    /// <summary>Runs a program to its end; false with its last line of output (or why it could not start) when it fails.</summary>
    private static (bool Ok, string Output) Run(string program, string directory, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        try
        {
            using var process = Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            var last = (stderr.Result + "\n" + stdout).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "";
            return (process.ExitCode == 0, process.ExitCode == 0 ? last : $"exit {process.ExitCode}: {last}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (false, $"{program} cannot run here: {e.Message}");
        }
    }

    /// <summary>An exclusive lock on <paramref name="path"/> held until disposed; waits for another process's.</summary>
    private static FileStream Lock(string path)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromHours(1);
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(500);   // another process prepares this corpus: wait for it (polling a file lock; no other signal crosses processes)
            }
        }
    }
}
