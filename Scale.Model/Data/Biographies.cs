using System.Text;

namespace Scale.Model.Data;

/// <summary>The six attributes of a synthetic biography (after bioS, "Physics of Language Models 3.1").</summary>
internal enum BioAttribute { BirthDate, BirthCity, University, Major, Employer, EmployerCity }

/// <summary>The language a population is rendered in.</summary>
internal enum BioLanguage { English, Korean }

/// <summary>One individual: a unique name and six attribute values, all in one language. The employer's city follows from the employer.</summary>
internal sealed record Person(string Name, IReadOnlyDictionary<BioAttribute, string> Attributes)
{
    public string this[BioAttribute attribute] => Attributes[attribute];
}

/// <summary>An evaluation item: greedy generation after <see cref="Prompt"/> must start with <see cref="Answer"/>.</summary>
internal sealed record BioPrompt(string Person, BioAttribute Attribute, string Prompt, string Answer);

/// <summary>
/// Every name and value pool of a synthetic world, generated from syllables by a seed: nothing is taken
/// from real lists. English and Korean worlds are generated independently (Hangul syllables for Korean).
/// </summary>
internal sealed class BioWorld
{
    private static readonly string[] LatinOnsets =
        ["b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kl", "l", "m", "n", "p", "pr", "r", "s", "sh", "st", "t", "tr", "v", "w", "z"];
    private static readonly string[] LatinVowels = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"];
    private static readonly string[] LatinCodas = ["", "", "", "n", "r", "l", "s", "m", "th", "x", "nd", "rk"];
    private static readonly string[] CitySuffixes = ["ton", "ville", "burg", "field", "port", "mouth", "ford", "dale"];
    private static readonly string[] UniversityForms = ["University of {0}", "{0} University", "{0} Institute of Technology", "{0} College", "{0} State University"];
    private static readonly string[] MajorSuffixes = ["ology", "ics", "istry", "onomy", " Studies", " Engineering"];
    private static readonly string[] EmployerSuffixes = [" Labs", " Systems", " Industries", " Group", " Dynamics", " Works"];

    private static readonly string[] KoreanCitySuffixes = ["시", "군", "읍"];
    private static readonly string[] KoreanUniversityForms = ["{0}대학교", "{0}과학기술원", "{0}공과대학", "국립{0}대학교"];
    private static readonly string[] KoreanMajorSuffixes = ["학", "공학", "과학"];
    private static readonly string[] KoreanEmployerSuffixes = ["전자", "산업", "연구소", "그룹", "기술"];

    public BioWorld(BioLanguage language, long seed, int cities = 200, int universities = 300, int majors = 100, int employers = 400)
    {
        Language = language;
        var rng = new Random(unchecked((int)(seed * 2654435761L ^ (long)language)));
        var used = new HashSet<string>();
        string Unique(Func<string> make)
        {
            for (int attempt = 0; attempt < 10_000; attempt++)
            {
                var value = make();
                if (used.Add(value)) return value;
            }
            throw new InvalidOperationException("The syllable space is too small for the requested pool sizes.");
        }
        if (language == BioLanguage.English)
        {
            Cities = Pool(cities, () => Unique(() => Capital(Word(rng, 2) + Pick(rng, CitySuffixes))));
            Universities = Pool(universities, () => Unique(() => string.Format(Pick(rng, UniversityForms), Capital(Word(rng, 2 + rng.Next(2))))));
            Majors = Pool(majors, () => Unique(() => Capital(Word(rng, 2) + Pick(rng, MajorSuffixes))));
            Employers = Pool(employers, () => Unique(() => Capital(Word(rng, 2)) + Pick(rng, EmployerSuffixes)));
        }
        else
        {
            Cities = Pool(cities, () => Unique(() => Hangul(rng, 2) + Pick(rng, KoreanCitySuffixes)));
            Universities = Pool(universities, () => Unique(() => string.Format(Pick(rng, KoreanUniversityForms), Hangul(rng, 2))));
            Majors = Pool(majors, () => Unique(() => Hangul(rng, 2) + Pick(rng, KoreanMajorSuffixes)));
            Employers = Pool(employers, () => Unique(() => Hangul(rng, 2) + Pick(rng, KoreanEmployerSuffixes)));
        }
        EmployerCities = Employers.ToDictionary(e => e, _ => Cities[rng.Next(Cities.Count)]);
        nameRandom = new Random(rng.Next());
    }

    private readonly Random nameRandom;
    private readonly HashSet<string> names = new();

    public BioLanguage Language { get; }
    public IReadOnlyList<string> Cities { get; }
    public IReadOnlyList<string> Universities { get; }
    public IReadOnlyList<string> Majors { get; }
    public IReadOnlyList<string> Employers { get; }
    public IReadOnlyDictionary<string, string> EmployerCities { get; }

    /// <summary>Draws <paramref name="count"/> people with names unique within this world (so successive populations are disjoint).</summary>
    public IReadOnlyList<Person> DrawPopulation(int count)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), "must be zero or more");
        var rng = nameRandom;
        var people = new List<Person>(count);
        for (int i = 0; i < count; i++)
        {
            string name;
            int attempts = 0;
            do
            {
                name = Language == BioLanguage.English
                    ? $"{Capital(Word(rng, 2))} {Capital(Word(rng, 1 + rng.Next(2)))} {Capital(Word(rng, 2 + rng.Next(2)))}"
                    : Hangul(rng, 1) + Hangul(rng, 2);
                if (++attempts > 100_000) throw new InvalidOperationException("The name space is exhausted.");
            } while (!names.Add(name));
            var employer = Employers[rng.Next(Employers.Count)];
            var date = new DateOnly(1900 + rng.Next(100), 1 + rng.Next(12), 1 + rng.Next(28));
            people.Add(new Person(name, new Dictionary<BioAttribute, string>
            {
                [BioAttribute.BirthDate] = Language == BioLanguage.English ? $"{MonthNames[date.Month - 1]} {date.Day}, {date.Year}" : $"{date.Year}년 {date.Month}월 {date.Day}일",
                [BioAttribute.BirthCity] = Cities[rng.Next(Cities.Count)],
                [BioAttribute.University] = Universities[rng.Next(Universities.Count)],
                [BioAttribute.Major] = Majors[rng.Next(Majors.Count)],
                [BioAttribute.Employer] = employer,
                [BioAttribute.EmployerCity] = EmployerCities[employer],
            }));
        }
        return people;
    }

    private static readonly string[] MonthNames =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

    private static IReadOnlyList<string> Pool(int count, Func<string> make) => Enumerable.Range(0, count).Select(_ => make()).ToList();
    private static string Pick(Random rng, string[] items) => items[rng.Next(items.Length)];
    private static string Capital(string word) => char.ToUpperInvariant(word[0]) + word[1..];

    private static string Word(Random rng, int syllables)
    {
        var word = new StringBuilder();
        for (int s = 0; s < syllables; s++)
            word.Append(Pick(rng, LatinOnsets)).Append(Pick(rng, LatinVowels)).Append(s == syllables - 1 ? Pick(rng, LatinCodas) : "");
        return word.ToString();
    }

    /// <summary>Hangul syllables composed from an initial, a medial and an optional final jamo index.</summary>
    private static string Hangul(Random rng, int syllables)
    {
        var word = new StringBuilder();
        for (int s = 0; s < syllables; s++)
        {
            int initial = HangulInitials[rng.Next(HangulInitials.Length)];
            int medial = rng.Next(21);
            int final = rng.Next(3) == 0 ? HangulFinals[rng.Next(HangulFinals.Length)] : 0;
            word.Append((char)(0xAC00 + (initial * 21 + medial) * 28 + final));
        }
        return word.ToString();
    }

    // Jamo indices in the Unicode Hangul syllable block (0xAC00 + (initial·21 + medial)·28 + final):
    // initials ㄱ ㄴ ㄷ ㄹ ㅁ ㅂ ㅅ ㅇ ㅈ ㅊ ㅋ ㅌ ㅍ ㅎ; finals ㄱ ㄴ ㄹ ㅁ ㅂ ㅇ.
    private static readonly int[] HangulInitials = [0, 2, 3, 5, 6, 7, 9, 11, 12, 14, 15, 16, 17, 18];
    private static readonly int[] HangulFinals = [1, 4, 8, 16, 17, 21];
}
