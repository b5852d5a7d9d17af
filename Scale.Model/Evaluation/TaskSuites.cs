using System.Text.Json.Serialization;
using Scale.Model.Data;
using Scale.Model.Transformer;

namespace Scale.Model.Evaluation;

/// <summary>
/// One task of an experiment's suite: the built-in biography choices of the side's own population
/// (<see cref="BioChoices"/>, no file), or a task file with its few-shot settings — what a task card says
/// (name, files, metric, shots). Paths are absolute, so that every node of a cluster reads the same files.
/// </summary>
internal sealed record TaskSpec
{
    public required string Name { get; init; }
    /// <summary>The task file (JSON Lines, <see cref="TaskFile"/>); null: the built-in <see cref="BioChoices"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? File { get; init; }
    /// <summary>The task file the solved examples are drawn from (<see cref="Shots"/> of them, by <see cref="Seed"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? FewShotFile { get; init; }
    public int Shots { get; init; }
    public int Seed { get; init; } = DefaultSeed;
    /// <summary>The metric a table shows: acc, acc_norm or exact_match (null: acc for multiple choice, exact_match for generation).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Metric { get; init; }

    /// <summary>lm-evaluation-harness's default seed for drawing few-shot examples.</summary>
    public const int DefaultSeed = 1234;
    public static readonly IReadOnlyList<string> Metrics = ["acc", "acc_norm", "exact_match"];

    public bool IsBuiltIn => File is null;

    public TaskSpec Validate(string where)
    {
        if (string.IsNullOrWhiteSpace(Name)) throw new ArgumentException($"{where}: a task needs a name.");
        if (IsBuiltIn && Name != BioChoices.Name)
            throw new ArgumentException($"{where}: '{Name}' is neither the built-in {BioChoices.Name} nor a task card or task file.");
        if (IsBuiltIn && (FewShotFile is not null || Shots > 0)) throw new ArgumentException($"{where}: {BioChoices.Name} is zero-shot.");
        if (File is not null && !System.IO.File.Exists(File)) throw new ArgumentException($"{where}: no such task file {File}.");
        if (Shots < 0) throw new ArgumentException($"{where}: shots must be 0 or more, got {Shots}.");
        if (Shots > 0 && FewShotFile is null) throw new ArgumentException($"{where}: {Shots} shots need a fewshot file to draw them from.");
        if (FewShotFile is not null && !System.IO.File.Exists(FewShotFile)) throw new ArgumentException($"{where}: no such few-shot file {FewShotFile}.");
        if (Metric is not null && !Metrics.Contains(Metric)) throw new ArgumentException($"{where}: metric must be one of {string.Join(", ", Metrics)}, got '{Metric}'.");
        return this;
    }
}

/// <summary>
/// An experiment's task suites: the old side's (what the model keeps, e.g. English ARC) and the new side's (what it
/// learns, e.g. KoBEST). Every method's final scores hold each task's metrics with their standard errors; with
/// <see cref="EveryEvaluation"/> the scores during training hold them too.
/// </summary>
internal sealed record SuitesSpec
{
    public IReadOnlyList<TaskSpec> Old { get; init; } = [];
    public IReadOnlyList<TaskSpec> New { get; init; } = [];
    public bool EveryEvaluation { get; init; }

    /// <summary>Checks every task against the experiment's sides: <see cref="BioChoices"/> needs biographies, and two people or more to choose among.</summary>
    public SuitesSpec Validate(Experiments.DataSpec oldData, Experiments.DataSpec newData)
    {
        foreach (var (side, tasks, data) in new[] { ("old", Old, oldData), ("new", New, newData) })
        {
            foreach (var task in tasks)
            {
                task.Validate($"suites.{side} '{task.Name}'");
                if (task.IsBuiltIn && !data.IsBio) throw new ArgumentException($"suites.{side}: {BioChoices.Name} asks about biographies; this experiment's data are text.");
                if (task.IsBuiltIn && data.People < 2)
                    throw new ArgumentException($"suites.{side}: {BioChoices.Name} draws its wrong choices from the other people of {side}.people, and there is {data.People}.");
            }
            if (tasks.Select(t => t.Name).Distinct().Count() != tasks.Count)
                throw new ArgumentException($"suites.{side} names a task twice: {string.Join(", ", tasks.Select(t => t.Name))}.");
        }
        return this;
    }

    /// <summary>Reads every task file and few-shot file (each checked line by line): a bad file is refused before anything trains.</summary>
    public void CheckFiles()
    {
        foreach (var task in Old.Concat(New).Where(t => !t.IsBuiltIn)) TaskSuite.Load("old", task);
    }
}

/// <summary>A task's result on one side: its items, every metric with its standard error, and which metric a table shows.</summary>
internal sealed record TaskResult(
    [property: JsonPropertyName("side")] string Side,
    [property: JsonPropertyName("task")] string Task,
    [property: JsonPropertyName("items")] int Items,
    [property: JsonPropertyName("metric")] string Metric,
    [property: JsonPropertyName("metrics")] IReadOnlyList<TaskMetric> Metrics)
{
    [JsonIgnore] public TaskMetric Headline => Metrics.FirstOrDefault(m => m.Name == Metric) ?? new TaskMetric(Metric, double.NaN, null);
    /// <summary>"old bio-choice acc": a column's name.</summary>
    [JsonIgnore] public string Label => $"{Side} {Task} {Metric}";

    /// <summary>The columns of rows scored on <paramref name="results"/> (a row's tasks each, null: none), in the order they first appear.</summary>
    public static IReadOnlyList<string> Columns(IEnumerable<IReadOnlyList<TaskResult>?> results)
        => results.SelectMany(r => r ?? []).Select(t => t.Label).Distinct().ToList();

    /// <summary>The task of <paramref name="results"/> in <paramref name="column"/>, or null.</summary>
    public static TaskResult? In(IReadOnlyList<TaskResult>? results, string column) => results?.FirstOrDefault(t => t.Label == column);
    /// <summary>The headline metric with its standard error, "0.512 ± 0.014", as lm-evaluation-harness prints them.</summary>
    [JsonIgnore]
    public string Text => Headline.StandardError is { } error
        ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Headline.Value:0.000} ± {error:0.000}")
        : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Headline.Value:0.000}");
}

/// <summary>A loaded task: its items and prompting, ready to score.</summary>
internal sealed record TaskSuite(string Side, TaskSpec Spec, IReadOnlyList<TaskItem> Items, TaskPrompting Prompting)
{
    public string Metric => Spec.Metric ?? (Items.Any(i => i.IsMultipleChoice) ? "acc" : "exact_match");

    /// <summary>A task file with its few-shot examples drawn; a metric the items do not have is refused.</summary>
    public static TaskSuite Load(string side, TaskSpec spec)
    {
        var items = TaskFile.Read(spec.File!);
        var shots = spec.FewShotFile is null ? [] : TaskPrompting.Draw(TaskFile.Read(spec.FewShotFile), spec.Shots, spec.Seed);
        var suite = new TaskSuite(side, spec, items, new TaskPrompting { Shots = shots });
        bool choice = items.Any(i => i.IsMultipleChoice), generation = items.Any(i => !i.IsMultipleChoice);
        if (suite.Metric == "exact_match" ? !generation : !choice)
            throw new ArgumentException($"{spec.File}: task '{spec.Name}' asks for {suite.Metric}, and its items have none ({(choice ? "multiple choice" : "generation")} only).");
        return suite;
    }

    /// <summary>The built-in <see cref="BioChoices"/> of <paramref name="people"/>.</summary>
    public static TaskSuite BioChoice(string side, TaskSpec spec, IReadOnlyList<Person> people, BioLanguage language)
        => new(side, spec, BioChoices.Items(people, language, spec.Seed + (side == "old" ? 0 : 1)), new TaskPrompting());

    public TaskResult Score(CausalLM model, ITokenizer tokenizer, int batchSize = 32)
    {
        var score = TaskScoring.Score(model, tokenizer, Items, Prompting, batchSize);
        return new TaskResult(Side, Spec.Name, score.Items, Metric, score.Metrics);
    }
}

/// <summary>An experiment's loaded suites with the tokenizer they are scored through.</summary>
internal sealed record TaskSuites(IReadOnlyList<TaskSuite> Suites, ITokenizer Tokenizer, bool EveryEvaluation)
{
    public IReadOnlyList<TaskResult> Score(CausalLM model) => Suites.Select(s => s.Score(model, Tokenizer)).ToList();
}
