namespace Scale.Model.Data;

/// <summary>
/// Question answering on biographies (the `bio-qa` protocol, docs/method.md): one question per attribute, answered
/// after "Answer:" by the attribute's value. A QA document is the question with its answer; an evaluation prompt is
/// the question up to "Answer:", scored by hard first-token accuracy (the argmax after the prompt must be the
/// answer's first token) and by recall of the whole value.
/// </summary>
internal static class BioQa
{
    // {0} is the person's name. Written for this project.
    private static readonly IReadOnlyDictionary<BioAttribute, string> Questions = new Dictionary<BioAttribute, string>
    {
        [BioAttribute.BirthDate] = "What is the birth date of {0}?",
        [BioAttribute.BirthCity] = "Which city was {0} born in?",
        [BioAttribute.University] = "Which university did {0} attend?",
        [BioAttribute.Major] = "What did {0} study?",
        [BioAttribute.Employer] = "Which company does {0} work for?",
        [BioAttribute.EmployerCity] = "In which city does {0} work?",
    };

    public const string AnswerMarker = "Answer:";

    /// <summary>The question about <paramref name="attribute"/> of <paramref name="person"/>, with the answer marker: the evaluation prompt.</summary>
    public static string Prompt(Person person, BioAttribute attribute) => string.Format(Questions[attribute], person.Name) + "\n" + AnswerMarker;

    /// <summary>The training document: the prompt and its answer.</summary>
    public static string Document(Person person, BioAttribute attribute) => Prompt(person, attribute) + " " + person[attribute];

    /// <summary>Every attribute's question about <paramref name="person"/>, as prompts with their answers.</summary>
    public static IReadOnlyList<BioPrompt> Prompts(Person person)
        => Enum.GetValues<BioAttribute>().Select(a => new BioPrompt(person.Name, a, Prompt(person, a), person[a])).ToList();

    /// <summary>
    /// The QA documents of <paramref name="people"/>: every question once per pass, <paramref name="passes"/> passes each in
    /// its own order (so that packed sequences do not always put the same questions side by side); deterministic in the seed.
    /// </summary>
    public static IReadOnlyList<string> Corpus(IReadOnlyList<Person> people, int passes, long seed)
    {
        if (passes < 1) throw new ArgumentOutOfRangeException(nameof(passes), "must be at least 1");
        if (people.Count == 0) throw new ArgumentException("no people to ask about.", nameof(people));
        var rng = new Random(unchecked((int)(seed * 69069L + 7)));
        var all = people.SelectMany(p => Enum.GetValues<BioAttribute>().Select(a => Document(p, a))).ToList();
        var documents = new List<string>(all.Count * passes);
        for (int pass = 0; pass < passes; pass++) documents.AddRange(all.OrderBy(_ => rng.Next()));
        return documents;
    }
}
