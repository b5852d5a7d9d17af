using System.ComponentModel;
using Scale.Actors.Reports;
using Scale.Model.Data;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>
/// `scale tokenize CORPUS --model DIR --out SHARDS`: a corpus larger than memory into token shards that text
/// experiments read batch by batch (docs/sweeps.md, and "Your own model and corpus" in docs/guide.md).
/// </summary>
internal sealed class TokenizeCommand : Command<TokenizeCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<CORPUS>"), Description("A folder (or one file) of .txt (a document each), .jsonl (a document per line, field \"text\") and their .gz.")]
        public string Corpus { get; init; } = "";

        [CommandOption("--model <DIR>"), Description("The model whose tokenizer encodes the corpus: its config.json and tokenizer.json.")]
        public string? Model { get; init; }

        [CommandOption("--out <DIR>"), Description("A new directory for the shards and their index.json.")]
        public string? Out { get; init; }

        [CommandOption("--held-out-fraction <F>"), Description("Share of documents kept for held-out scoring (default 0.1)."), DefaultValue(0.1)]
        public double HeldOutFraction { get; init; } = 0.1;

        [CommandOption("--shard-tokens <N>"), Description("Tokens per shard file (default 67108864: 256 MiB files)."), DefaultValue(CorpusTokenizer.DefaultShardTokens)]
        public long ShardTokens { get; init; } = CorpusTokenizer.DefaultShardTokens;

        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Model)) return ValidationResult.Error("--model DIR is required (the model whose tokenizer encodes the corpus).");
            if (string.IsNullOrWhiteSpace(Out)) return ValidationResult.Error("--out DIR is required (a new directory for the shards).");
            return ValidationResult.Success();
        }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        ShardIndex index;
        if (Console.IsOutputRedirected)
        {
            long lastReported = 0;
            index = CorpusTokenizer.Write(settings.Corpus, settings.Model!, settings.Out!, settings.HeldOutFraction, settings.ShardTokens,
                new SynchronousProgress<TokenizeProgress>(p =>
                {
                    if (p.Tokens - lastReported < 10_000_000 && p.CurrentFile is not null) return;
                    lastReported = p.Tokens;
                    Console.WriteLine($"tokenize: {p.FilesDone}/{p.Files} files, {p.Documents:N0} documents, {p.Tokens:N0} tokens");
                }), cancellation);
        }
        else
        {
            index = null!;
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("tokenize", maxValue: 1);
                    index = CorpusTokenizer.Write(settings.Corpus, settings.Model!, settings.Out!, settings.HeldOutFraction, settings.ShardTokens,
                        new SynchronousProgress<TokenizeProgress>(p =>
                        {
                            task.MaxValue = p.Files;
                            task.Value = p.FilesDone;
                            task.Description = $"tokenize {p.FilesDone}/{p.Files} files, {p.Documents:N0} documents, {p.Tokens:N0} tokens";
                        }), cancellation);
                });
        }
        long train = index.Train.Sum(f => f.Tokens), heldOut = index.HeldOut.Sum(f => f.Tokens);
        Console.WriteLine($"Wrote {index.Train.Count + index.HeldOut.Count} shards to {settings.Out}: {train:N0} training tokens " +
                          $"({index.Train.Sum(f => f.Documents):N0} documents), {heldOut:N0} held-out tokens ({index.HeldOut.Sum(f => f.Documents):N0} documents) " +
                          $"in {clock.Elapsed.TotalSeconds:0.0} s.");
        return 0;
    }
}
