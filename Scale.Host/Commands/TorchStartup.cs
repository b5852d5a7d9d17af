using System.Runtime.InteropServices;
using Scale.Model.Native;

namespace Scale.Host.Commands;

/// <summary>
/// The start of every command that computes: <see cref="TorchRuntime.Start"/>, with its one notice on stderr when the
/// kernel selection could not do what was asked. When the selected MKL path computes a wrong product, MKL has already
/// cached it for this process, so the process starts itself again, the same command line in place (same process id),
/// on MKL's own choice (<c>SCALE_MKL_KERNELS=mkl</c>), having said so once.
/// </summary>
internal static class TorchStartup
{
    public static KernelPath Start()
    {
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
            var arguments = File.ReadAllText("/proc/self/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);
            var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
                .Select(v => $"{v.Key}={v.Value}").ToArray();
            Execute("/proc/self/exe", [.. arguments, null], [.. environment, null]);
            throw new InvalidOperationException($"could not start again on MKL's own kernels (execve: errno {Marshal.GetLastPInvokeError()}); run with {MklKernels.Variable}=mkl");
        }
    }

    [DllImport("libc", EntryPoint = "execve", SetLastError = true)]
    private static extern int Execute(string path, string?[] arguments, string?[] environment);
}
