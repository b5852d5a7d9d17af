using System.Runtime.CompilerServices;
using Scale.Model.Native;

namespace Scale.Tests;

internal static class TestRuntime
{
    /// <summary>
    /// The tests' process starts libtorch as every `scale` command does (<see cref="TorchRuntime.Start"/>): MKL's kernels
    /// selected before any test's first product, so the tests compute on the path the program computes on.
    /// </summary>
#pragma warning disable CA2255 // a test assembly's one-time native set-up, before any test runs
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Start() => TorchRuntime.Start();
}
