using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Scale.Model.Native;

/// <summary>
/// Which of MKL's code paths the process's matrix products run on, as recorded with a trial (its checkpoints and scores):
/// a resume is bit-identical only on the same path. <see cref="Id"/> is short and stable ("mkl-avx512", "mkl-avx2",
/// "mkl-generic", "mkl-type-N", "no-mkl"); <see cref="Description"/> says how it was chosen.
/// </summary>
internal sealed record KernelPath(string Id, string Description)
{
    /// <summary>A line to show once, when the selection could not do what was asked (null when it did).</summary>
    public string? Notice { get; init; }

    /// <summary>The path MKL takes by itself on this CPU (null without MKL): what <c>SCALE_MKL_KERNELS=mkl</c> runs on.</summary>
    public string? MklOwn { get; init; }

    public override string ToString() => Id;
}

/// <summary>
/// Selects MKL's best code path for this CPU inside the process. libtorch links MKL statically and MKL picks its kernels
/// by CPU vendor: on AMD CPUs it runs its generic kernels, at under half the speed of its AVX-512 ones on the same
/// hardware (measured on these machines' EPYC: a 2048³ product at 84–91 GFLOP/s on one thread against 200–213;
/// docs/bench.md). MKL asks one exported function, <c>mkl_serv_cpu_detect</c>, which path to take, and caches the answer
/// at its first product. Before any product runs, this overwrites that function's first bytes, in the process's own
/// copy of libtorch_cpu.so, with a stub that answers the path this CPU supports (checked from CPUID here) and counts its
/// calls. Then one product is checked against a double-precision reference, and the count says that MKL asked (so the
/// choice took effect). Nothing is written to disk, no C compiler or preloaded library is needed, and a CPU for which
/// MKL already chooses as well (Intel) is left alone.
/// </summary>
/// <remarks>
/// The choice is the environment variable <c>SCALE_MKL_KERNELS</c>: <c>auto</c> (the default: the best path the CPU
/// supports), <c>mkl</c> (MKL's own choice: change nothing), <c>avx2</c> or <c>avx512</c> (that path, refused on a CPU
/// without it). MKL's answer codes are its own: 0 its generic kernels, 5 AVX2, 7 AVX-512 (measured on libtorch 2.10's
/// MKL 2024.2: other codes are refused by MKL with "CPU N is not supported" and end the process, so none other is ever
/// written).
/// </remarks>
internal static class MklKernels
{
    public const string Variable = "SCALE_MKL_KERNELS";

    /// <summary>Set to <c>fail</c>, the product check reports a wrong result (for the tests of the fallback).</summary>
    public const string CheckFaultVariable = "SCALE_MKL_KERNELS_CHECK";

    private const int Generic = 0, Avx2Code = 5, Avx512Code = 7;
    private const int StubBytes = 19;
    private static string? patchFailure;

    private static readonly object gate = new();
    private static KernelPath? current;

    /// <summary>The path of this process, once <see cref="Select"/> ran; before that, MKL's own choice as far as anyone knows.</summary>
    public static KernelPath Current => current ?? new KernelPath("mkl-unselected", "MKL's own choice (Scale's kernel selection did not run in this process)");

    /// <summary>
    /// Chooses the path (once per process; later calls return the first answer). Must run before libtorch's first matrix
    /// product. Throws <see cref="KernelCheckFailedException"/> when the selected path computed a wrong product: MKL keeps
    /// its choice for the life of the process, so the caller must start again with <c>SCALE_MKL_KERNELS=mkl</c>.
    /// </summary>
    public static KernelPath Select()
    {
        lock (gate)
        {
            return current ??= Choose();
        }
    }

    private static unsafe KernelPath Choose()
    {
        var setting = (Environment.GetEnvironmentVariable(Variable) ?? "auto").Trim().ToLowerInvariant();
        if (setting is not ("auto" or "" or "mkl" or "avx2" or "avx512"))
            throw new ArgumentException($"{Variable}={setting}: expected auto, mkl, avx2 or avx512.");
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return new KernelPath("no-mkl", "not x86-64 Linux: libtorch's own kernels");
        InitializeDeviceType(DeviceType.CPU);   // loads libtorch, which holds MKL
        var library = LoadedLibrary("libtorch_cpu.so");
        if (library is null || !NativeLibrary.TryGetExport(library.Value, "mkl_serv_cpu_detect", out var detect))
            return new KernelPath("no-mkl", "this libtorch has no MKL: its own kernels");

        int own = Ask(detect);
        string cpu = Describe();
        if (setting == "mkl") return new KernelPath(Name(own), $"MKL's own choice ({Name(own)}) on {cpu}, as {Variable}=mkl asks") { MklOwn = Name(own) };
        int supported = Avx512 ? Avx512Code : Avx2Fma ? Avx2Code : Generic;
        int wanted = setting switch { "avx512" => Avx512Code, "avx2" => Avx2Code, _ => supported };
        if (wanted > supported)
            throw new ArgumentException($"{Variable}={setting}: this CPU ({cpu}) lacks the instructions MKL's {Name(wanted)} kernels need; use auto or mkl.");
        if (own == wanted || (setting == "auto" && own >= wanted))
            return new KernelPath(Name(own), $"MKL's own choice ({Name(own)}) on {cpu}: nothing to change") { MklOwn = Name(own) };

        int* counter = Patch(detect, wanted);
        if (counter == null)
            return new KernelPath(Name(own), $"MKL's own choice ({Name(own)}) on {cpu}")
            {
                MklOwn = Name(own),
                Notice = $"cannot select MKL's {Name(wanted)} kernels here ({patchFailure}); matrix products run on MKL's own choice, {Name(own)}",
            };
        Check(counter, wanted);
        return new KernelPath(Name(wanted), $"{Name(wanted)}, selected by Scale on {cpu} (MKL alone would take {Name(own)})") { MklOwn = Name(own) };
    }

    private static string Name(int code) => code switch
    {
        Generic => "mkl-generic",
        Avx2Code => "mkl-avx2",
        Avx512Code => "mkl-avx512",
        _ => $"mkl-type-{code}",
    };

    /// <summary>The subsets MKL's AVX-512 kernels use (those of Skylake-SP, which its code 7 stands for).</summary>
    internal static bool Avx512 => Avx512F.IsSupported && Avx512F.VL.IsSupported && Avx512BW.IsSupported && Avx512CD.IsSupported && Avx512DQ.IsSupported;

    private static bool Avx2Fma => Avx2.IsSupported && Fma.IsSupported;

    private static string Describe()
    {
        if (!X86Base.IsSupported) return "an x86-64 CPU";
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        var vendor = new byte[12];
        BitConverter.TryWriteBytes(vendor.AsSpan(0, 4), ebx);
        BitConverter.TryWriteBytes(vendor.AsSpan(4, 4), edx);
        BitConverter.TryWriteBytes(vendor.AsSpan(8, 4), ecx);
        return $"{Encoding.ASCII.GetString(vendor)} with {(Avx512 ? "AVX-512" : Avx2Fma ? "AVX2" : "neither AVX2 nor AVX-512")}";
    }

    private static unsafe int Ask(IntPtr detect) => ((delegate* unmanaged<int>)detect)();

    /// <summary>
    /// Replaces the start of <c>mkl_serv_cpu_detect</c> with: <c>movabs rax, counter; lock inc dword [rax]; mov eax, code; ret</c>.
    /// The function's own size (its symbol's st_size) must hold the stub; the page is made writable for the copy only.
    /// </summary>
    private static unsafe int* Patch(IntPtr detect, int code)
    {
        long size = SymbolSize(detect);
        if (size < StubBytes)
        {
            patchFailure = $"mkl_serv_cpu_detect is {size} bytes, too few for the {StubBytes}-byte stub";
            return null;
        }
        int* counter = (int*)NativeMemory.AllocZeroed(sizeof(int));   // lives as long as the process: the stub points at it
        var stub = new List<byte> { 0x48, 0xB8 };
        stub.AddRange(BitConverter.GetBytes((ulong)counter));
        stub.AddRange([0xF0, 0xFF, 0x00, 0xB8]);
        stub.AddRange(BitConverter.GetBytes(code));
        stub.Add(0xC3);
        long page = Environment.SystemPageSize;
        long start = (long)detect & ~(page - 1), end = ((long)detect + stub.Count + page - 1) & ~(page - 1);
        const int Read = 1, Write = 2, Execute = 4;
        if (Protect((IntPtr)start, (UIntPtr)(ulong)(end - start), Read | Write | Execute) != 0)
        {
            patchFailure = $"the system refused to make MKL's code writable: mprotect errno {Marshal.GetLastPInvokeError()}";
            NativeMemory.Free(counter);
            return null;
        }
        Marshal.Copy(stub.ToArray(), 0, detect, stub.Count);
        Protect((IntPtr)start, (UIntPtr)(ulong)(end - start), Read | Execute);
        return counter;
    }

    /// <summary>
    /// One product through MKL against a double-precision reference, and MKL's calls of the stub during it. The reference is
    /// computed here, in plain loops, so nothing of MKL's checks MKL.
    /// </summary>
    private static unsafe void Check(int* counter, int code)
    {
        const int M = 96, K = 160, N = 80;
        var random = new Random(12345);
        var a = Enumerable.Range(0, M * K).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var b = Enumerable.Range(0, K * N).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] product;
        using (var scope = NewDisposeScope())
        {
            product = torch.matmul(tensor(a).view(M, K), tensor(b).view(K, N)).data<float>().ToArray();
        }
        double worst = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double exact = 0, scale = 0;
                for (int k = 0; k < K; k++)
                {
                    exact += (double)a[i * K + k] * b[k * N + j];
                    scale += Math.Abs((double)a[i * K + k] * b[k * N + j]);
                }
                worst = Math.Max(worst, Math.Abs(product[i * N + j] - exact) / scale);
            }
        if (Environment.GetEnvironmentVariable(CheckFaultVariable) == "fail") worst = double.PositiveInfinity;
        if (*counter == 0)
            throw new KernelCheckFailedException($"MKL did not ask for its code path during the check product (it had chosen before Scale could select {Name(code)})");
        if (!(worst <= 1e-5))
            throw new KernelCheckFailedException($"MKL's {Name(code)} kernels computed a wrong product (relative error {worst:g3}, at most 1e-5 expected)");
    }

    /// <summary>The handle of an already loaded shared library, found by its file name among the process's mappings.</summary>
    private static IntPtr? LoadedLibrary(string fileName)
    {
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            int slash = line.IndexOf('/');
            if (slash < 0) continue;
            var path = line[slash..];
            if (Path.GetFileName(path) == fileName && NativeLibrary.TryLoad(path, out var handle)) return handle;
        }
        return null;
    }

    private static unsafe long SymbolSize(IntPtr address)
    {
        const int DlSymbolEntry = 1;   // RTLD_DL_SYMENT: the symbol's Elf64_Sym, whose st_size is at byte 16
        DlInfo info;
        IntPtr symbol;
        if (SymbolOf(address, &info, &symbol, DlSymbolEntry) == 0 || symbol == IntPtr.Zero) return 0;
        return *(long*)((byte*)symbol + 16);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct DlInfo
    {
        public IntPtr FileName, FileBase, SymbolName, SymbolAddress;
    }

    [DllImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    private static extern int Protect(IntPtr address, UIntPtr length, int protection);

    [DllImport("libc", EntryPoint = "dladdr1")]
    private static extern unsafe int SymbolOf(IntPtr address, DlInfo* info, IntPtr* extra, int flags);
}

/// <summary>The selected kernel path could not be confirmed; MKL may already have cached it, so the process must start again on MKL's own choice.</summary>
internal sealed class KernelCheckFailedException(string message) : Exception(message);
