using Scale.Host.Commands;
using Spectre.Console.Cli;

var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("scale");
    config.AddCommand<BenchCommand>("bench")
        .WithDescription("Train every method for a fixed number of steps on the bench configuration and report tokens/s, step time, parameters and peak memory.");
    config.AddCommand<GenerateCommand>("generate")
        .WithDescription("Greedy-generate a continuation from a base or imported Hugging Face model directory.");
    config.AddCommand<RunCommand>("run")
        .WithDescription("Run a sweep (built-in: quickstart, validation, bio, bio-ko, bio-qa, text-validation, text-ko, text-de, asha-search; or a .hocon file) to completion on this machine; run it again after an interruption and it resumes.");
    config.AddCommand<SeedCommand>("seed")
        .WithDescription("Start a seed node of a cluster: it hosts the sweep manager (a cluster singleton) with its journal (PostgreSQL, or SQLite on one machine).");
    config.AddCommand<WorkerCommand>("worker")
        .WithDescription("Start a worker node: one trainer per device pulls trials of the cluster's sweeps; checkpoints go to the shared data directory.");
    config.AddCommand<CancelCommand>("cancel")
        .WithDescription("Cancel a sweep on a cluster: no trainer gets its trials any more, its running trials stop (journaled; its results stay readable).");
    config.AddCommand<StatusCommand>("status")
        .WithDescription("Show every sweep in the data directory, or one sweep's trials.");
    config.AddCommand<ResultsCommand>("results")
        .WithDescription("Print a sweep's trials with their settings, state and scores (table, csv or json).");
    config.AddCommand<PlotCommand>("plot")
        .WithDescription("Plot the trials of one or more sweeps as (retention, acquisition) points with their Pareto front, as a PNG.");
    config.AddCommand<ScoreCommand>("score")
        .WithDescription("Score a model directory (imported, or exported by `scale export`, SCALE models included) on a multiple-choice or generation task file, as lm-evaluation-harness scores them.");
    config.AddCommand<ConvertTaskCommand>("convert-task")
        .WithDescription("Write a task file for `scale score` from ARC, HellaSwag, MMLU or KoBEST in their Hugging Face datasets' JSON layout, with lm-evaluation-harness's prompts.");
    config.AddCommand<EvaluateCommand>("evaluate")
        .WithDescription("Score one of a trial's checkpoints (latest, previous, final or a directory) on retention and acquisition.");
    config.AddCommand<ReportCommand>("report")
        .WithDescription("Write a sweep's report: loss curves, retention vs acquisition with the Pareto front, recall per attribute (PNG) and report.md.");
    config.AddCommand<ExportCommand>("export")
        .WithDescription("Export a trained trial as a model directory: a Hugging Face checkpoint for the baselines (LoRA merged), the base plus the expansion for SCALE models.");
    config.AddCommand<TokenizeCommand>("tokenize")
        .WithDescription("Tokenize a corpus larger than memory (.txt, .jsonl, .gz) with a model's tokenizer into token shards that text experiments read batch by batch.");
    config.AddCommand<CorpusCommand>("corpus")
        .WithDescription("Prepare the built-in real-text corpora (Debian's GIMP and LibreOffice help in English, German and Korean) under the data directory.");
    config.AddCommand<ExperimentCommand>("experiment")
        .WithDescription("Run a two-phase experiment (pre-train a base on old data, continually pre-train every method on new data) and report retention, acquisition and forgetting.");
    config.PropagateExceptions();
});
return CommandErrors.Run(() => app.Run(args));
