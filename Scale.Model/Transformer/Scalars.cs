using TorchSharp;

namespace Scale.Model.Transformer;

/// <summary>
/// The one way Scale passes numbers to libtorch. A TorchSharp <see cref="Scalar"/> owns native memory, is not tracked
/// by dispose scopes, and is freed only by Dispose or its finalizer; TorchSharp's methods read its handle without
/// keeping it alive during the native call. An implicit double→Scalar conversion (x.mul(0.5), x + 1.0, square(), the
/// default alpha of add) therefore makes a temporary that a collection on another thread can finalise while libtorch
/// reads it (seen in CI as a garbled scalar), and that otherwise waits for a collection to free its memory. Every
/// number given to a tensor operation is held: the constants here for the life of the process, any other value in a
/// <see cref="ScalarScope"/> that disposes it when the operation is done.
/// </summary>
internal static class Scalars
{
    /// <summary>The integer 1: the alpha TorchSharp's add uses when none is given.</summary>
    public static readonly Scalar One = 1.ToScalar();
    /// <summary>The integer 2: the exponent of square().</summary>
    public static readonly Scalar Two = 2.ToScalar();
    public static readonly Scalar OneDouble = 1.0.ToScalar();
    public static readonly Scalar Half = 0.5.ToScalar();

    /// <summary>A scope whose Scalars live until it is disposed.</summary>
    public static ScalarScope Scope() => new();
}

/// <summary>Scalars made for one computation and disposed with it (see <see cref="Scalars"/>).</summary>
internal sealed class ScalarScope : IDisposable
{
    private readonly List<Scalar> held = [];

    public Scalar Of(double value) => Keep(value.ToScalar());
    public Scalar Of(long value) => Keep(value.ToScalar());
    public Scalar Of(int value) => Keep(value.ToScalar());

    private Scalar Keep(Scalar scalar)
    {
        held.Add(scalar);
        return scalar;
    }

    public void Dispose()
    {
        foreach (var scalar in held) scalar.Dispose();
        held.Clear();
    }
}
