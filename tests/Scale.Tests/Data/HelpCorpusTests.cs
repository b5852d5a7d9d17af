using System.Diagnostics;
using Scale.Model.Data;
using Scale.Tests.Host;
using Scale.Tests.Model;

namespace Scale.Tests.Data;

public class HelpCorpusTests
{
    private const string DocBookPage = """
        <?xml version="1.0" encoding="UTF-8" standalone="no"?>
        <html xmlns="http://www.w3.org/1999/xhtml"><head><title>2.4. File Open…</title><script>var x = "the and of";</script></head>
        <body>
          <div class="navheader"><table><tr><th>2.4. File Open…</th></tr><tr><td><a href="prev.html">이전</a></td></tr></table></div>
          <div class="sect2">
            <h3 class="title">2.4. File Open…</h3>
            <p>The <span class="guimenuitem">Open…</span> command activates a dialog that lets
               you select an image to be loaded from your hard-drive.</p>
            <p><span class="guimenu">파일</span> 메뉴에서 <span class="guimenuitem">열기</span> 명령을 선택하면 이미지를 불러올 수 있는 대화 상자가 나타납니다.</p>
            <ul><li><p>이 대화 상자에서 파일을 고르고 열기 단추를 누르면 이미지가 새 창에서 열리며, 여러 파일을 한꺼번에 고를 수도 있습니다.</p></li></ul>
          </div>
          <div class="navfooter"><table><tr><td>2.3. Create</td></tr></table><a class="reportbug">Report a bug in GIMP</a></div>
        </body></html>
        """;

    [Fact]
    public void A_page_gives_its_paragraphs_without_navigation_scripts_or_markup()
    {
        var paragraphs = HelpPages.Paragraphs(DocBookPage);

        Assert.Equal("2.4. File Open…", paragraphs[0]);
        Assert.StartsWith("The Open… command activates a dialog that lets you select", paragraphs[1]);
        Assert.StartsWith("파일 메뉴에서 열기 명령을", paragraphs[2]);
        Assert.Equal(4, paragraphs.Count);
        Assert.DoesNotContain(paragraphs, p => p.Contains("이전", StringComparison.Ordinal) || p.Contains("Report a bug", StringComparison.Ordinal)
                                               || p.Contains("var x", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("The command opens a dialog that lets you select an image from the disk.", "English")]
    [InlineData("Mit diesem Befehl öffnen Sie einen Dialog, in dem Sie das Bild auswählen können.", "German")]
    [InlineData("파일 메뉴에서 열기 명령을 선택하면 Open dialog 대화 상자가 나타납니다.", "Korean")]
    [InlineData("Filters → Distorts → Ripple", null)]
    [InlineData("2.4", null)]
    public void A_paragraphs_language_is_told_by_its_script_or_its_function_words(string paragraph, string? expected)
        => Assert.Equal(expected is null ? null : Enum.Parse<TextLanguage>(expected), ParagraphLanguage.Of(paragraph));

    [Fact]
    public void Extraction_writes_a_document_per_page_with_only_its_languages_paragraphs_and_counts_them()
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.Combine("help", "sub"));
        File.WriteAllText(dir.Combine("help", "open.html"), DocBookPage);
        File.WriteAllText(dir.Combine("help", "sub", "english-only.html"), "<html><body><p>This page was not translated, and it is only in English for the reader.</p></body></html>");

        var counts = HelpPages.Extract(dir.Combine("help"), TextLanguage.Korean, dir.Combine("out"));

        Assert.Equal((2, 1, 2), (counts.Pages, counts.Documents, counts.ParagraphsKept));
        Assert.Equal(3, counts.ParagraphsLeftOut);   // the heading, the English paragraph, and the untranslated page's one
        var text = File.ReadAllLines(dir.Combine("out", "open.txt"));
        Assert.Equal(2, text.Length);
        Assert.All(text, line => Assert.Equal(TextLanguage.Korean, ParagraphLanguage.Of(line)));
        Assert.False(File.Exists(dir.Combine("out", "sub", "english-only.txt")));
        Assert.Single(CorpusFiles.Documents(dir.Combine("out")));
        Assert.False(Directory.Exists(dir.Combine("out.partial")));
    }

    [Fact]
    public void An_extraction_without_text_of_its_language_is_refused_in_one_line_and_writes_nothing()
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.Combine("help"));
        File.WriteAllText(dir.Combine("help", "a.html"), "<html><body><p>Only English here, with the words that tell it is English.</p></body></html>");

        var error = Assert.Throws<ArgumentException>(() => HelpPages.Extract(dir.Combine("help"), TextLanguage.German, dir.Combine("out"), "gimp-help-de"));

        Assert.StartsWith("gimp-help-de: no page of 1 under ", error.Message);
        Assert.DoesNotContain('\n', error.Message);
        Assert.False(Directory.Exists(dir.Combine("out")));
        Assert.False(Directory.Exists(dir.Combine("out.partial")));
    }

    private static readonly Dictionary<string, string> NoSystemPackages = new() { [DebianHelpCorpora.RootVariable] = "/nonexistent-root" };

    [Fact]
    public void The_corpus_command_refuses_a_package_it_cannot_find_saying_what_to_install()
    {
        using var dir = new TempDirectory();

        var run = ScaleProcess.RunWith(NoSystemPackages, "corpus", "gimp-help-ko", "--offline", "--data-dir", dir.Path);

        Assert.Equal(2, run.ExitCode);
        var line = Assert.Single(run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("apt-get install gimp-help-ko", line);
        Assert.False(Directory.Exists(DebianHelpCorpora.Folder(dir.Path, "gimp-help-ko")));
    }

    [Fact]
    public void The_corpus_command_extracts_a_package_from_its_deb_and_refuses_one_without_its_language()
    {
        using var dir = new TempDirectory();
        // Two real .deb files, built with Debian's dpkg-deb: a Korean help page, and a "German" package holding English only.
        string Deb(string package, string tree, string html)
        {
            var root = dir.Combine("build-" + package);
            Directory.CreateDirectory(Path.Combine(root, "DEBIAN"));
            File.WriteAllText(Path.Combine(root, "DEBIAN", "control"),
                $"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: Scale tests <tests@localhost>\nDescription: a test package\n");
            Directory.CreateDirectory(Path.Combine(root, tree));
            File.WriteAllText(Path.Combine(root, tree, "page.html"), html);
            var debs = DebianHelpCorpora.DebFolder(dir.Path);
            Directory.CreateDirectory(debs);
            var deb = Path.Combine(debs, $"{package}_1.0_all.deb");
            using var build = Process.Start(new ProcessStartInfo("dpkg-deb", ["--build", "--root-owner-group", root, deb]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
            build.WaitForExit();
            Assert.True(build.ExitCode == 0, build.StandardError.ReadToEnd());
            return deb;
        }
        Deb("gimp-help-ko", "usr/share/gimp/2.0/help/ko", DocBookPage);
        Deb("gimp-help-de", "usr/share/gimp/2.0/help/de", "<html><body><p>This page is in English, and it was never translated for the German manual.</p></body></html>");

        var korean = ScaleProcess.RunWith(NoSystemPackages, "corpus", "gimp-help-ko", "--offline", "--data-dir", dir.Path);
        var german = ScaleProcess.RunWith(NoSystemPackages, "corpus", "gimp-help-de", "--offline", "--data-dir", dir.Path);

        Assert.True(korean.ExitCode == 0, korean.Stderr);
        Assert.Contains("gimp-help-ko", korean.Stdout);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(DebianHelpCorpora.Folder(dir.Path, "gimp-help-ko"), "page.txt")).Length);
        Assert.Equal(2, german.ExitCode);
        Assert.Contains("gimp-help-de: no page of 1", german.Stderr);
        Assert.False(Directory.Exists(DebianHelpCorpora.Folder(dir.Path, "gimp-help-de")));
    }
}
