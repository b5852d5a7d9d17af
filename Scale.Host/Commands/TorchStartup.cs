using System.Diagnostics;
using System.Runtime.InteropServices;
using Scale.Model;
using Scale.Model.Native;

namespace Scale.Host.Commands;

/// <summary>
/// The start of every command that computes. First glibc's malloc: unless the user tuned it, the process starts itself
/// again, the same command line in place (same process id), with <see cref="Devices.MallocTunables"/> for the command's
/// precision in its environment
/// (the settings that stop large tensors being mapped afresh every step can only be given before a process starts; about
/// 0.1 s, and up to 6× the training speed where a step's logits exceed 32 MB: docs/bench.md). Then
/// <see cref="TorchRuntime.Start"/>, with its one notice on stderr when the kernel selection could not do what was asked.
/// When the selected MKL path computes a wrong product, MKL has already cached it for this process, so the process starts
/// itself again on MKL's own choice (<c>SCALE_MKL_KERNELS=mkl</c>), having said so once.
/// </summary>
internal static class TorchStartup
{
    /// <param name="precision">The command's --precision (bf16 gets more malloc arenas: <see cref="Devices.MallocTunables"/>).</param>
    public static KernelPath Start(string precision = "fp32")
    {
        if (OperatingSystem.IsLinux() && !Devices.MallocTunedByUser)
        {
            bool reduced = string.Equals(precision?.Trim(), "bf16", StringComparison.OrdinalIgnoreCase);
            Environment.SetEnvironmentVariable("GLIBC_TUNABLES", Devices.MallocTunables(reduced));
            Restart();
        }
        try
        {
            var path = TorchRuntime.Start();
            if (path.Notice is { } notice) Console.Error.WriteLine($"scale: {notice}");
            return path;
        }
        catch (KernelCheckFailedException e)
        {
            Console.Error.WriteLine($"scale: {e.Message}; starting again on MKL's own kernels ({MklKernels.Variable}=mkl)");
            Console.Error.Flush();
            Environment.SetEnvironmentVariable(MklKernels.Variable, "mkl");
            Restart();
            throw new UnreachableException();
        }
    }

    /// <summary>This process's command line again, in place (execve: same process id), with .NET's view of the environment.</summary>
    private static void Restart()
    {
        var arguments = File.ReadAllText("/proc/self/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);
        var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .Select(v => $"{v.Key}={v.Value}").ToArray();
        Console.Out.Flush();
        Execute("/proc/self/exe", [.. arguments, null], [.. environment, null]);
        throw new InvalidOperationException($"could not start again (execve: errno {Marshal.GetLastPInvokeError()}).");
    }

    [DllImport("libc", EntryPoint = "execve", SetLastError = true)]
    private static extern int Execute(string path, string?[] arguments, string?[] environment);
}
