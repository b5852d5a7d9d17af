namespace Scale.Model.Data;

/// <summary>
/// Renders people as text: one sentence per attribute from one of several templates, sentences in a
/// different order each time. In every template the value follows a prefix that names the person, so the
/// prefix is a prompt whose greedy continuation must begin with the value.
/// </summary>
internal static class BioRenderer
{
    // {0} is the person's name, {1} the value. Written for this project.
    private static readonly IReadOnlyDictionary<BioAttribute, string[]> English = new Dictionary<BioAttribute, string[]>
    {
        [BioAttribute.BirthDate] =
        [
            "{0} was born on {1}.", "{0}'s birthday falls on {1}.", "{0} came into the world on {1}.",
            "The birth date of {0} is {1}.", "{0} was welcomed into the family on {1}.", "Records list the birth of {0} on {1}.",
        ],
        [BioAttribute.BirthCity] =
        [
            "{0} was born in {1}.", "{0} spent the early years of childhood in {1}.", "The hometown of {0} is {1}.",
            "{0} grew up in {1}.", "{0} first saw the light of day in {1}.", "The birthplace of {0} is {1}.",
        ],
        [BioAttribute.University] =
        [
            "{0} studied at {1}.", "{0} graduated from {1}.", "{0} received a degree from {1}.",
            "For higher education, {0} attended {1}.", "{0} is an alumnus of {1}.", "The university {0} attended was {1}.",
        ],
        [BioAttribute.Major] =
        [
            "{0} majored in {1}.", "{0} chose to specialise in {1}.", "The field {0} studied was {1}.",
            "{0} completed a degree in {1}.", "At university, {0} focused on {1}.", "{0} earned a diploma in {1}.",
        ],
        [BioAttribute.Employer] =
        [
            "{0} works for {1}.", "{0} is employed by {1}.", "The employer of {0} is {1}.",
            "{0} took a job at {1}.", "{0} has a position at {1}.", "These days {0} works at {1}.",
        ],
        [BioAttribute.EmployerCity] =
        [
            "{0} works in the city of {1}.", "The office of {0} is located in {1}.", "{0} commutes every day to {1}.",
            "{0}'s workplace is in {1}.", "For work, {0} lives in {1}.", "{0} is based in {1} for work.",
        ],
    };

    private static readonly IReadOnlyDictionary<BioAttribute, string[]> Korean = new Dictionary<BioAttribute, string[]>
    {
        [BioAttribute.BirthDate] =
        [
            "{0}의 생일은 {1}이다.", "{0}은 {1}에 태어났다.", "기록에 따르면 {0}의 출생일은 {1}이다.",
            "{0}이 세상에 나온 날은 {1}이다.", "{0}의 생년월일은 {1}이다.",
        ],
        [BioAttribute.BirthCity] =
        [
            "{0}의 고향은 {1}이다.", "{0}은 어린 시절을 {1}에서 보냈다.", "{0}의 출생지는 {1}이다.",
            "{0}이 태어난 곳은 {1}이다.", "{0}은 {1}에서 자랐다.",
        ],
        [BioAttribute.University] =
        [
            "{0}은 {1}에서 공부했다.", "{0}의 모교는 {1}이다.", "{0}은 {1}를 졸업했다.",
            "{0}이 다닌 대학은 {1}이다.", "{0}은 {1}에서 학위를 받았다.",
        ],
        [BioAttribute.Major] =
        [
            "{0}의 전공은 {1}이다.", "{0}은 대학에서 {1}을 전공했다.", "{0}이 공부한 분야는 {1}이다.",
            "{0}은 {1}으로 학위를 마쳤다.", "{0}의 학문 분야는 {1}이다.",
        ],
        [BioAttribute.Employer] =
        [
            "{0}의 직장은 {1}이다.", "{0}은 {1}에서 일한다.", "{0}을 고용한 회사는 {1}이다.",
            "{0}은 {1}에 다닌다.", "요즘 {0}은 {1}에서 근무한다.",
        ],
        [BioAttribute.EmployerCity] =
        [
            "{0}의 근무지는 {1}이다.", "{0}은 매일 {1}으로 출근한다.", "{0}의 사무실은 {1}에 있다.",
            "{0}은 일 때문에 {1}에 산다.", "{0}이 일하는 도시는 {1}이다.",
        ],
    };

    public static IReadOnlyList<string> Templates(BioLanguage language, BioAttribute attribute)
        => (language == BioLanguage.English ? English : Korean)[attribute];

    /// <summary>One rendering: every attribute once, each from a random template, in a random order.</summary>
    public static string Render(Person person, BioLanguage language, Random rng)
    {
        var order = Enum.GetValues<BioAttribute>().OrderBy(_ => rng.Next()).ToList();
        return string.Join(" ", order.Select(attribute =>
        {
            var templates = Templates(language, attribute);
            return Fill(templates[rng.Next(templates.Count)], language, person.Name, person[attribute]);
        }));
    }

    /// <summary>Puts name and value into a template; in Korean the particle after each takes the form its last syllable asks for.</summary>
    public static string Fill(string template, BioLanguage language, string name, string value)
    {
        if (language == BioLanguage.English) return string.Format(template, name, value);
        return template
            .Replace("{0}은", Particle(name, "은", "는")).Replace("{0}이 ", Particle(name, "이", "가") + " ")
            .Replace("{0}을", Particle(name, "을", "를"))
            .Replace("{1}을", Particle(value, "을", "를")).Replace("{1}를", Particle(value, "을", "를"))
            .Replace("{1}으로", value + (HasFinal(value) && !EndsWithRieul(value) ? "으로" : "로"))
            .Replace("{0}", name).Replace("{1}", value);
    }

    private static string Particle(string word, string afterConsonant, string afterVowel)
        => word + (HasFinal(word) ? afterConsonant : afterVowel);

    private static bool IsHangulSyllable(char c) => c is >= '\uAC00' and <= '\uD7A3';
    private static bool HasFinal(string word) => word.Length > 0 && (!IsHangulSyllable(word[^1]) || (word[^1] - 0xAC00) % 28 != 0);
    private static bool EndsWithRieul(string word) => word.Length > 0 && IsHangulSyllable(word[^1]) && (word[^1] - 0xAC00) % 28 == 8;

    /// <summary>The documents of a population: <paramref name="renderings"/> per person, deterministic in the seed.</summary>
    public static IReadOnlyList<string> Corpus(IReadOnlyList<Person> people, BioLanguage language, int renderings, long seed)
    {
        if (renderings < 1) throw new ArgumentOutOfRangeException(nameof(renderings), "must be at least 1");
        var rng = new Random(unchecked((int)(seed * 40503L + 17)));
        var documents = new List<string>(people.Count * renderings);
        for (int r = 0; r < renderings; r++)
            foreach (var person in people) documents.Add(Render(person, language, rng));
        return documents;
    }

    /// <summary>Evaluation prompts: for each attribute, the prefix of the first template up to the value.</summary>
    public static IReadOnlyList<BioPrompt> Prompts(Person person, BioLanguage language)
        => Enum.GetValues<BioAttribute>().Select(attribute =>
        {
            var template = Templates(language, attribute)[0];
            var prefix = template[..template.IndexOf("{1}", StringComparison.Ordinal)].TrimEnd();
            return new BioPrompt(person.Name, attribute, Fill(prefix, language, person.Name, person[attribute]), person[attribute]);
        }).ToList();
}
