using Scale.Model.Transformer;
using static TorchSharp.torch;

namespace Scale.Model.Upscaling;

/// <summary>
/// A routed control (docs/method.md): any trained method that still holds the base's computation — LoRA with its adapters
/// off, depth expansion with its inserted blocks skipped, full fine-tuning or Freeze beside the frozen base — answered per
/// token by a routing rule from a preservation head (the frozen base's own logits) or an adaptation head (the trained
/// model's). Unlike SCALE-Route, which takes both heads from one pass (<see cref="ScaleDecoder.Heads"/>), it runs two
/// whole passes: the base's and the trained model's. The trained model's parameters are not registered here: it keeps
/// its own names, and this wrapper adds none.
/// </summary>
internal sealed class RoutedModel : CausalLM
{
    private readonly Decoder baseModel;
    private readonly CausalLM adapted;

    public RoutedModel(Decoder baseModel, CausalLM adapted, RoutingSpec routing) : base(nameof(RoutedModel), baseModel.Config)
    {
        if (adapted is ScaleDecoder) throw new ArgumentException("a SCALE model routes itself (ScaleDecoder.Routing), from one pass.");
        if (routing.NeedsCalibration) throw new ArgumentException($"routing {routing} must be calibrated before it routes.");
        (this.baseModel, this.adapted, Routing) = (baseModel, adapted, routing);
    }

    public RoutingSpec Routing { get; }

    /// <summary>The trained model whose answers the adaptation head gives.</summary>
    public CausalLM Adapted => adapted;

    public override Device Device => adapted.Device;

    public override bool SupportsCache => false;

    /// <summary>Both heads: the base's logits (no autograd) and the trained model's, (B, T, V) each.</summary>
    public (Tensor Preservation, Tensor Adaptation) Heads(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        Tensor preservation;
        using (no_grad()) preservation = baseModel.Forward(tokens, null);
        var adaptation = adapted.Forward(tokens, null);
        return (preservation.MoveToOuterDisposeScope(), adaptation.MoveToOuterDisposeScope());
    }

    public override Tensor Forward(Tensor tokens, DecodeCache? cache)
    {
        if (cache is not null) throw new NotSupportedException("a routed model routes on the whole context: decode it without a KV cache.");
        using var scope = NewDisposeScope();
        var (preservation, adaptation) = Heads(tokens);
        return Upscaling.Routing.Route(Routing, preservation, adaptation, tokens).MoveToOuterDisposeScope();
    }
}
