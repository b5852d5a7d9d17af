using Scale.Model.Data;
using Scale.Model.Evaluation;

namespace Scale.Actors.Sweeps;

/// <summary>
/// Task cards: a task's name, files, metric and shots in a small HOCON file, its paths relative to the card —
/// <c>task { name = arc-easy, file = arc-easy.jsonl, fewshot = arc-easy-train.jsonl, shots = 25, metric = acc_norm }</c>.
/// An experiment's suites name cards, bare task files (.jsonl: zero-shot, named by the file) or the built-in
/// <see cref="BioChoices.Name"/>.
/// </summary>
internal static class TaskCards
{
    private static readonly string[] Keys = ["name", "file", "fewshot", "shots", "seed", "metric"];

    public static bool IsCard(string path) => Path.GetExtension(path) is ".hocon" or ".conf";

    /// <summary>A suite's entry: the built-in name, or a task file or card (a relative path from <paramref name="baseDirectory"/>).</summary>
    public static TaskSpec Entry(string entry, string baseDirectory, string where)
    {
        if (entry == BioChoices.Name) return new TaskSpec { Name = entry };
        var path = Path.GetFullPath(Path.Combine(baseDirectory, entry));
        if (!File.Exists(path)) throw new ArgumentException($"{where}: '{entry}' is neither {BioChoices.Name} nor a task card or task file (no file {path}).");
        return IsCard(path) ? Read(path) : new TaskSpec { Name = Path.GetFileNameWithoutExtension(path), File = path };
    }

    public static TaskSpec Read(string path)
    {
        var c = Hocon.Parse(File.ReadAllText(path), path);
        if (!c.HasPath("task")) throw new ArgumentException($"{path}: no 'task' block.");
        var task = c.GetConfig("task");
        Hocon.RejectUnknown(task, Keys, path, "task.");
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string? PathOf(string key) => task.HasPath(key) ? Path.GetFullPath(Path.Combine(directory, Text(key))) : null;
        int Int(string key, int fallback) => Hocon.Get(task, key, k => task.GetInt(k), fallback, path, "task.");
        string Text(string key) => Hocon.Get(task, key, k => task.GetString(k), "", path, "task.");
        if (!task.HasPath("file")) throw new ArgumentException($"{path}: task.file (the task's JSON Lines file) is required.");
        var spec = new TaskSpec
        {
            Name = task.HasPath("name") ? Text("name") : Path.GetFileNameWithoutExtension(path),
            File = PathOf("file"), FewShotFile = PathOf("fewshot"),
            Shots = Int("shots", 0), Seed = Int("seed", TaskSpec.DefaultSeed),
            Metric = task.HasPath("metric") ? Text("metric") : null,
        };
        return spec.Validate(path);
    }
}
