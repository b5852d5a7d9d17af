using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using AngleSharp.Html.Parser;

namespace Scale.Model.Data;

/// <summary>The languages the help-page corpora are sorted into.</summary>
internal enum TextLanguage { English, German, Korean }

/// <summary>
/// Which language a paragraph is in, from what it is written with: Hangul (Korean) when at least 30% of its letters are
/// Hangul syllables or jamo; otherwise English or German by which language's function words it holds more of (lists of
/// frequent words no other of the two shares). A paragraph with neither (a heading, a menu path, a number) is undetermined.
/// Translated help is partly untranslated: a Korean page keeps its English paragraphs verbatim, so a corpus of one
/// language takes only the paragraphs of that language.
/// </summary>
internal static class ParagraphLanguage
{
    private static readonly HashSet<string> English =
    [
        "the", "and", "of", "to", "is", "are", "that", "this", "you", "with", "for", "on", "can", "be", "as", "or", "it", "by",
        "from", "which", "your", "not", "have", "if", "when", "these", "has", "its", "there", "was",
    ];

    private static readonly HashSet<string> German =
    [
        "der", "die", "das", "und", "ist", "sind", "nicht", "mit", "sie", "ein", "eine", "einen", "den", "dem", "zu", "von",
        "auf", "für", "im", "sich", "auch", "wird", "werden", "können", "kann", "oder", "wenn", "des", "bei", "dass", "wie",
    ];

    public static TextLanguage? Of(string paragraph)
    {
        int letters = 0, hangul = 0;
        foreach (char c in paragraph)
        {
            if (!char.IsLetter(c)) continue;
            letters++;
            if (c is >= '\uAC00' and <= '\uD7A3' or >= '\u1100' and <= '\u11FF' or >= '\u3130' and <= '\u318F') hangul++;
        }
        if (letters == 0) return null;
        if (hangul * 10 >= letters * 3) return TextLanguage.Korean;
        int english = 0, german = 0;
        foreach (Match word in Words.Matches(paragraph.ToLowerInvariant()))
        {
            if (English.Contains(word.Value)) english++;
            else if (German.Contains(word.Value)) german++;
        }
        return english > german ? TextLanguage.English : german > english ? TextLanguage.German : null;
    }

    private static readonly Regex Words = new(@"\p{L}+", RegexOptions.Compiled);
}

/// <summary>What one extraction wrote: pages read, documents written, their characters, and paragraphs kept or left out.</summary>
internal sealed record HelpCorpusCounts
{
    [JsonPropertyName("source")] public required string Source { get; init; }
    [JsonPropertyName("language")] public required string Language { get; init; }
    [JsonPropertyName("pages")] public int Pages { get; init; }
    [JsonPropertyName("documents")] public int Documents { get; init; }
    [JsonPropertyName("characters")] public long Characters { get; init; }
    [JsonPropertyName("paragraphs_kept")] public int ParagraphsKept { get; init; }
    /// <summary>Paragraphs in another language (the untranslated ones of a translation) or in none that could be told.</summary>
    [JsonPropertyName("paragraphs_left_out")] public int ParagraphsLeftOut { get; init; }
}

/// <summary>
/// Turns a folder of HTML help pages into a text corpus: a document per page (a .txt file at the page's relative path),
/// holding the page's paragraphs in one language, one per line, with markup, navigation (headers, sidebars, footers,
/// DocBook's navheader and navfooter), scripts and styles stripped. Pages with fewer than
/// <see cref="MinimumCharacters"/> characters of that language are left out.
/// </summary>
internal static class HelpPages
{
    public const int MinimumCharacters = 100;
    public const string CountsFile = "corpus.json";

    /// <summary>Paragraph-level blocks: the text of each innermost one is a paragraph.</summary>
    private static readonly string[] Blocks = ["p", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "pre", "caption", "blockquote", "figcaption"];

    private static readonly string Navigation = "head, script, style, noscript, header, nav, aside, footer, .navheader, .navfooter";

    /// <summary>The paragraphs of one page, in order, whitespace collapsed.</summary>
    public static IReadOnlyList<string> Paragraphs(string html)
    {
        var document = new HtmlParser().ParseDocument(html);
        foreach (var element in document.QuerySelectorAll(Navigation).ToList()) element.Remove();
        var body = document.Body;
        if (body is null) return [];
        var selector = string.Join(", ", Blocks);
        var paragraphs = new List<string>();
        foreach (var block in body.QuerySelectorAll(selector))
        {
            if (block.QuerySelector(selector) is not null) continue;   // not innermost: its inner blocks are the paragraphs
            var text = Collapse(block.TextContent);
            if (text.Length > 0) paragraphs.Add(text);
        }
        return paragraphs;
    }

    private static string Collapse(string text)
    {
        var builder = new StringBuilder(text.Length);
        bool space = false;
        foreach (char c in text)
        {
            if (char.IsWhiteSpace(c)) space = builder.Length > 0;
            else
            {
                if (space) builder.Append(' ');
                builder.Append(c);
                space = false;
            }
        }
        return builder.ToString();
    }

    /// <summary>
    /// Extracts every .html page under <paramref name="source"/> into <paramref name="output"/> (written to a temporary
    /// folder and moved into place whole). Refuses a source without pages, and an extraction with no document of
    /// <paramref name="language"/>, in one line.
    /// </summary>
    public static HelpCorpusCounts Extract(string source, TextLanguage language, string output, string? name = null)
    {
        name ??= source;
        if (!Directory.Exists(source)) throw new DirectoryNotFoundException($"{name}: no folder {source}.");
        var pages = Directory.EnumerateFiles(source, "*.html", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        if (pages.Count == 0) throw new ArgumentException($"{name}: no .html pages under {source}.");
        var partial = output + ".partial";
        if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        Directory.CreateDirectory(partial);
        int documents = 0, kept = 0, leftOut = 0;
        long characters = 0;
        foreach (var page in pages)
        {
            var paragraphs = Paragraphs(File.ReadAllText(page, Encoding.UTF8));
            var mine = paragraphs.Where(p => ParagraphLanguage.Of(p) == language).ToList();
            leftOut += paragraphs.Count - mine.Count;
            var text = string.Join("\n", mine);
            if (text.Length < MinimumCharacters)
            {
                leftOut += mine.Count;
                continue;
            }
            var target = Path.Combine(partial, Path.ChangeExtension(Path.GetRelativePath(source, page), ".txt"));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.WriteAllText(target, text + "\n", new UTF8Encoding(false));
            (documents, kept, characters) = (documents + 1, kept + mine.Count, characters + text.Length);
        }
        if (documents == 0)
        {
            Directory.Delete(partial, recursive: true);
            throw new ArgumentException($"{name}: no page of {pages.Count} under {source} has {language} text (at least {MinimumCharacters} characters); " +
                                        "is it the right package?");
        }
        var counts = new HelpCorpusCounts
        {
            Source = name, Language = language.ToString().ToLowerInvariant(), Pages = pages.Count, Documents = documents,
            Characters = characters, ParagraphsKept = kept, ParagraphsLeftOut = leftOut,
        };
        File.WriteAllText(Path.Combine(partial, CountsFile), JsonSerializer.Serialize(counts, new JsonSerializerOptions { WriteIndented = true }));
        if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
        Directory.Move(partial, output);
        return counts;
    }
}
