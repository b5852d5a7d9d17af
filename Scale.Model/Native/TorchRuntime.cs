namespace Scale.Model.Native;

/// <summary>
/// What a process does once, before its first tensor operation: libtorch's idle threads told to sleep
/// (<see cref="Devices.PreferPassiveWaiting"/>, which must precede libtorch's loading), freed memory kept for the next
/// step's tensors (<see cref="Devices.KeepFreedMemory"/>) and MKL's best kernels for this CPU selected
/// (<see cref="MklKernels"/>, which must precede the first matrix product). Every `scale` command that computes
/// calls it first; the tests' assembly calls it as it loads.
/// </summary>
internal static class TorchRuntime
{
    /// <summary>Idempotent: the kernel path of the process. Throws <see cref="KernelCheckFailedException"/> as <see cref="MklKernels.Select"/> does.</summary>
    public static KernelPath Start()
    {
        Devices.PreferPassiveWaiting();
        Devices.KeepFreedMemory();
        return MklKernels.Select();
    }
}
