using Scale.Actors.Cluster;
using System.ComponentModel;
using Akka.Actor;
using Scale.Actors.Evaluation;
using Scale.Actors.Sweeps;
using Scale.Actors.Trainers;
using Scale.Model;
using Scale.Model.Experiments;
using Spectre.Console.Cli;

namespace Scale.Host.Commands;

/// <summary>`scale evaluate SWEEP TRIAL [--checkpoint latest|previous|final|DIR]`: the Evaluator scores one of a trial's checkpoints.</summary>
internal sealed class EvaluateCommand : AsyncCommand<EvaluateCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<SWEEP>"), Description("The sweep: a built-in name or its .hocon file (it plans the trial).")]
        public string Sweep { get; init; } = "";

        [CommandArgument(1, "<TRIAL>"), Description("The trial's id (see `scale results`).")]
        public string Trial { get; init; } = "";

        [CommandOption("--checkpoint <WHICH>"), Description("latest, previous, final, or a checkpoint directory."), DefaultValue("latest")]
        public string Checkpoint { get; init; } = "latest";

        [CommandOption("--data-dir <DIR>"), Description("Journal, cached bases and checkpoints (default ./scale-data)."), DefaultValue("scale-data")]
        public string DataDir { get; init; } = "scale-data";

        [CommandOption("--threads <N>"), Description("libtorch threads; 0 = all cores."), DefaultValue(0)]
        public int Threads { get; init; }

        [CommandOption("--route <RULES>"), Description("Score the trial's weights routed by these rules (comma-separated) instead of as trained: cosine[[:τ]], cosine-prob[[:τ]], confidence[[:θ]], novelty[[:s[[:window]]]], novelty-auto[[:q[[:window]]]]. A SCALE trial routes itself; any other trained method is scored as a routed control beside the frozen base. No training.")]
        public string? Route { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellation)
    {
        TorchStartup.Start();
        var found = TrialLookup.Find(settings.Sweep, settings.Trial, settings.Checkpoint, settings.DataDir);
        var (sweep, trial, plan, directory) = (found.Sweep, found.Trial, found.Plan, found.CheckpointDirectory);
        var plans = new List<TrialPlan> { plan };
        if (settings.Route is { } rules)
        {
            if (!plan.Method.CanRoute) throw new ArgumentException($"--route: {trial.Id} is the frozen base, which has nothing to route between.");
            try
            {
                plans = rules.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    .Select(rule => plan.RoutedBy(Scale.Model.Upscaling.RoutingSpec.Parse(rule))).ToList();
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"--route: {e.Message}");
            }
            if (plans.Count == 0) throw new ArgumentException("--route needs at least one rule.");
        }
        found.ExistingCheckpoint(plan);
        Devices.UseThreads(settings.Threads);
        // The base under the data directory's lock, as trainers prepare it; an actor system of its own for the Evaluator:
        // evaluating reads checkpoints, never the sweep's journal, so no coordinator is started.
        using var task = BaseLock.Prepare(sweep.Experiment, settings.DataDir, null, cancellation);
        using var system = ActorSystem.Create("scale-evaluate", AkkaDefaults.Config("WARNING"));
        var evaluator = system.ActorOf(Evaluator.Props(task.Runner, settings.Threads), "evaluator");
        foreach (var scored in plans)
        {
            var reply = await evaluator.Ask(new EvaluateCheckpoint(trial.Id, scored, scored.Method.Kind == MethodKind.Frozen ? null : directory), TimeSpan.FromHours(1));
            if (reply is Status.Failure failure) throw new ArgumentException($"Cannot evaluate {directory}: {failure.Cause.Message}");
            var scores = ((CheckpointEvaluated)reply).Scores;
            var routed = scores.Routing is { } r ? $" routed by {r}" + (scores.RoutingThreshold is { } s ? $" (threshold {s:0.000} nats)" : "") : "";
            Console.WriteLine($"{trial.Id}{routed} ({directory}): retention {scores.Scores.Retention:0.000}, acquisition {scores.Scores.Acquisition:0.000}, " +
                              $"forgetting {scores.Scores.Forgetting:0.000} ({task.Metric}; base {task.BaseOld:0.000})" +
                              string.Concat((scores.Scores.Tasks ?? []).Select(t => $", {t.Label} {t.Text}")) + $", scored in {scores.Seconds:0.0} s");
        }
        return 0;
    }
}
