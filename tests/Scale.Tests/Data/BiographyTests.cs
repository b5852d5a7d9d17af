using Scale.Model.Data;

namespace Scale.Tests.Data;

public class BiographyTests
{
    private static (IReadOnlyList<Person> A, IReadOnlyList<Person> B) Populations(BioLanguage language, long seed, int size = 60)
    {
        var world = new BioWorld(language, seed);
        return (world.DrawPopulation(size), world.DrawPopulation(size));
    }

    [Theory]
    [InlineData("English")]
    [InlineData("Korean")]
    public void The_same_seed_gives_a_byte_identical_corpus_and_another_seed_a_different_one(string name)
    {
        var language = Enum.Parse<BioLanguage>(name);
        var first = BioRenderer.Corpus(Populations(language, 7).A, language, renderings: 5, seed: 3);
        var second = BioRenderer.Corpus(Populations(language, 7).A, language, renderings: 5, seed: 3);
        var other = BioRenderer.Corpus(Populations(language, 8).A, language, renderings: 5, seed: 3);

        Assert.Equal(string.Join("\n", first), string.Join("\n", second));
        Assert.NotEqual(string.Join("\n", first), string.Join("\n", other));
    }

    [Theory]
    [InlineData("English")]
    [InlineData("Korean")]
    public void Populations_are_disjoint_and_names_unique(string name)
    {
        var language = Enum.Parse<BioLanguage>(name);
        var (a, b) = Populations(language, 11, size: 500);

        Assert.Equal(500, a.Select(p => p.Name).Distinct().Count());
        Assert.Equal(500, b.Select(p => p.Name).Distinct().Count());
        Assert.Empty(a.Select(p => p.Name).Intersect(b.Select(p => p.Name)));
    }

    [Theory]
    [InlineData("English")]
    [InlineData("Korean")]
    public void Every_attribute_is_recoverable_from_every_rendering(string name)
    {
        var language = Enum.Parse<BioLanguage>(name);
        var (people, _) = Populations(language, 5, size: 40);
        var corpus = BioRenderer.Corpus(people, language, renderings: 8, seed: 1);

        for (int i = 0; i < corpus.Count; i++)
        {
            var person = people[i % people.Count];
            var rendering = corpus[i];
            int covered = 0;
            foreach (var attribute in Enum.GetValues<BioAttribute>())
            {
                var sentences = BioRenderer.Templates(language, attribute)
                    .Select(t => BioRenderer.Fill(t, language, person.Name, person[attribute]))
                    .Where(rendering.Contains).ToList();
                Assert.True(sentences.Count == 1, $"{attribute} of {person.Name} in: {rendering}");
                covered += sentences[0].Length;
            }
            Assert.Equal(rendering.Length, covered + 5);   // six sentences and the five spaces between them
        }
    }

    [Fact]
    public void Renderings_vary_templates_and_sentence_order()
    {
        var (people, _) = Populations(BioLanguage.English, 5, size: 1);
        var renderings = BioRenderer.Corpus(people, BioLanguage.English, renderings: 20, seed: 2);

        Assert.True(renderings.Distinct().Count() >= 18);
        Assert.True(renderings.Select(r => r[..12]).Distinct().Count() > 3, "the first sentence should vary");
    }

    [Fact]
    public void The_employer_city_follows_from_the_employer()
    {
        var (a, b) = Populations(BioLanguage.English, 9, size: 400);

        foreach (var group in a.Concat(b).GroupBy(p => p[BioAttribute.Employer]))
            Assert.Single(group.Select(p => p[BioAttribute.EmployerCity]).Distinct());
    }

    [Fact]
    public void Korean_particles_follow_the_final_consonant()
    {
        Assert.Equal("김민은 부산에서 자랐다.", BioRenderer.Fill("{0}은 {1}에서 자랐다.", BioLanguage.Korean, "김민", "부산"));
        Assert.Equal("이수는 부산에서 자랐다.", BioRenderer.Fill("{0}은 {1}에서 자랐다.", BioLanguage.Korean, "이수", "부산"));
        Assert.Equal("이수는 서울로 출근한다.", BioRenderer.Fill("{0}은 {1}으로 출근한다.", BioLanguage.Korean, "이수", "서울"));
        Assert.Equal("이수는 강원으로 출근한다.", BioRenderer.Fill("{0}은 {1}으로 출근한다.", BioLanguage.Korean, "이수", "강원"));
    }

    [Theory]
    [InlineData("English")]
    [InlineData("Korean")]
    public void Prompts_are_prefixes_of_a_rendered_sentence_followed_by_the_value(string name)
    {
        var language = Enum.Parse<BioLanguage>(name);
        var (people, _) = Populations(language, 4, size: 10);

        foreach (var person in people)
        {
            var prompts = BioRenderer.Prompts(person, language);
            Assert.Equal(6, prompts.Count);
            foreach (var prompt in prompts)
            {
                var sentence = BioRenderer.Fill(BioRenderer.Templates(language, prompt.Attribute)[0], language, person.Name, prompt.Answer);
                Assert.StartsWith(prompt.Prompt + " " + prompt.Answer, sentence);
            }
        }
    }
}
