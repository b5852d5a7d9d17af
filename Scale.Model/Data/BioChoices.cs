using Scale.Model.Evaluation;

namespace Scale.Model.Data;

/// <summary>
/// The built-in multiple-choice suite of a biography population (`bio-choice`): for every person and attribute, the
/// recall prompt (the first template up to the value, as <see cref="BioRenderer.Prompts"/> gives it) with four
/// completions of that template's sentence — the person's own value and three other values of the same attribute
/// drawn from the same population — the gold one at a place drawn by the seed. Each completion is the rest of the
/// sentence, rendered for its own value (so that a particle after the value would agree with it).
/// Scored as lm-evaluation-harness scores a multiple-choice task: acc and acc_norm.
/// </summary>
internal static class BioChoices
{
    public const string Name = "bio-choice";
    public const int Choices = 4;

    public static IReadOnlyList<TaskItem> Items(IReadOnlyList<Person> people, BioLanguage language, long seed)
    {
        if (people.Count == 0) throw new ArgumentException("no people to ask about.", nameof(people));
        var rng = new Random(unchecked((int)(seed * 2654435761L + 11)));
        var values = Enum.GetValues<BioAttribute>().ToDictionary(a => a, a => people.Select(p => p[a]).Distinct().ToList());
        var items = new List<TaskItem>(people.Count * values.Count);
        foreach (var person in people)
        {
            foreach (var attribute in Enum.GetValues<BioAttribute>())
            {
                var others = values[attribute].Where(v => v != person[attribute]).ToList();
                // A population with too few distinct values (an attribute few people differ in) asks with fewer choices; one value asks nothing.
                if (others.Count == 0) continue;
                var distractors = others.OrderBy(_ => rng.Next()).Take(Choices - 1).ToList();
                int gold = rng.Next(distractors.Count + 1);
                var options = new List<string>(distractors);
                options.Insert(gold, person[attribute]);
                var (context, completions) = Sentence(person, attribute, language, options);
                items.Add(new TaskItem(context, completions, gold, null));
            }
        }
        return items.Count > 0 ? items : throw new ArgumentException($"{Name}: the {people.Count} people share every value: there is nothing to choose among.");
    }

    /// <summary>The prompt and, for each value, the rest of the first template's sentence after it (without the leading space the task's target delimiter puts back).</summary>
    private static (string Context, IReadOnlyList<string> Completions) Sentence(Person person, BioAttribute attribute, BioLanguage language, IReadOnlyList<string> options)
    {
        var template = BioRenderer.Templates(language, attribute)[0];
        var prompt = BioRenderer.Fill(template[..template.IndexOf("{1}", StringComparison.Ordinal)].TrimEnd(), language, person.Name, person[attribute]);
        var completions = options.Select(value =>
        {
            var sentence = BioRenderer.Fill(template, language, person.Name, value);
            if (!sentence.StartsWith(prompt, StringComparison.Ordinal))
                throw new InvalidOperationException($"the template '{template}' does not render its prompt '{prompt}' first.");
            return sentence[prompt.Length..].TrimStart();
        }).ToList();
        return (prompt, completions);
    }
}
