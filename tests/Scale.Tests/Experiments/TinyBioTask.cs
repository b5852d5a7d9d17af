using Scale.Model.Data;
using Scale.Model.Evaluation;
using Scale.Model.Experiments;
using Scale.Model.Transformer;

namespace Scale.Tests.Experiments;

/// <summary>A continual pre-training task small enough for unit tests: 4 old and 4 new people, a 32-wide base.</summary>
internal sealed class TinyBioTask : IDisposable
{
    public TinyBioTask()
    {
        var world = new BioWorld(BioLanguage.English, 4);
        var (old, @new) = (OldPeople, NewPeople) = (world.DrawPopulation(4), world.DrawPopulation(4));
        var tokenizer = Tokenizer = ByteBpeTokenizer.Train(BioRenderer.Corpus(old, BioLanguage.English, 6, 1), 300);
        var config = new ModelConfig { VocabSize = tokenizer.VocabSize, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64 };
        Base = Decoder.Create(config, seed: 2).Freeze();
        var train = new PackedSequences(BioRenderer.Corpus(@new, BioLanguage.English, 6, 2).Select(tokenizer.Encode), tokenizer.EndOfTextId, 32);
        var oldPrompts = old.SelectMany(p => BioRenderer.Prompts(p, BioLanguage.English)).ToList();
        var newPrompts = @new.SelectMany(p => BioRenderer.Prompts(p, BioLanguage.English)).ToList();
        Runner = new TrialRunner(Base, tokenizer, train, oldPrompts, newPrompts,
                                 TeacherForcedRecall.Measure(Base, tokenizer, oldPrompts).Recall);
        // The old people rendered anew: the calibration slice of Route's default rule, as an experiment makes it.
        Runner.Scoring.Calibration = new PackedSequences(BioRenderer.Corpus(old, BioLanguage.English, 1, 9).Select(tokenizer.Encode), tokenizer.EndOfTextId, 32);
    }

    public Decoder Base { get; }
    public IReadOnlyList<Person> OldPeople { get; }
    public IReadOnlyList<Person> NewPeople { get; }
    public ByteBpeTokenizer Tokenizer { get; }
    public TrialRunner Runner { get; }

    public void Dispose() => Base.Dispose();
}
