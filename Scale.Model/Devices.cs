using TorchSharp;
using static TorchSharp.torch;

namespace Scale.Model;

/// <summary>Device selection, a runtime option: "cpu", "cuda" or "cuda:N" (and "cpu:N" for a further trainer on the CPU).</summary>
internal static class Devices
{
    public static Device Parse(string name)
    {
        var text = name.Trim().ToLowerInvariant();
        if (text == "cpu") return CPU;
        if (text.StartsWith("cpu:", StringComparison.Ordinal))
            return int.TryParse(text[4..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _)
                ? CPU
                : throw new ArgumentException($"Invalid device '{name}': expected cpu, cpu:N, cuda or cuda:N.");
        if (text == "cuda" || text.StartsWith("cuda:", StringComparison.Ordinal))
        {
            int index = 0;
            if (text.Length > 4 && !int.TryParse(text[5..], out index) || index < 0)
                throw new ArgumentException($"Invalid device '{name}': expected cpu, cuda or cuda:N.");
            if (!cuda.is_available())
                throw new ArgumentException(
                    $"Device '{name}' requested, but CUDA is not available: this build uses the CPU libtorch " +
                    "(build with -p:TorchBackend=cuda on a GPU node) or the machine has no usable GPU.");
            if (index >= cuda.device_count())
                throw new ArgumentException($"Device '{name}' requested, but only {cuda.device_count()} CUDA device(s) are present.");
            return new Device(DeviceType.CUDA, index);
        }
        throw new ArgumentException($"Invalid device '{name}': expected cpu, cpu:N, cuda or cuda:N.");
    }

    /// <summary>
    /// A `--devices` list (comma-separated), one trainer per entry, each checked as <see cref="Parse"/> checks it: a
    /// CPU build asked for CUDA is refused here, before anything starts. "cuda" means cuda:0. "cpu:1", "cpu:2", …
    /// name further trainers on the CPU, which share the CPU's resident base (useful to split the cores between
    /// trainers, and how the multi-trainer path is tested on machines without GPUs).
    /// </summary>
    public static IReadOnlyList<string> ParseList(string list)
    {
        var names = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(n => n.ToLowerInvariant() == "cuda" ? "cuda:0" : n.ToLowerInvariant()).ToList();
        if (names.Count == 0) throw new ArgumentException("--devices needs at least one device: cpu, cpu:N, cuda or cuda:N.");
        foreach (var name in names) Parse(name);
        if (names.GroupBy(n => n == "cpu:0" ? "cpu" : n).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new ArgumentException($"--devices names {twice.Key} twice: one trainer per device (use cpu:1, cpu:2, … for more trainers on the CPU).");
        return names;
    }

    /// <summary>
    /// A `--precision` value for trainers on <paramref name="devices"/>: fp32 (null: full precision, the default) or bf16,
    /// mixed precision of the linear maps and attention (<see cref="Transformer.Autocast"/>) with the frozen base resident in
    /// bf16. A CPU trainer gets it only where the CPU multiplies bf16 natively (<see cref="Native.CpuFeatures.Bf16"/>):
    /// elsewhere libtorch emulates it, slower than fp32, so it is refused rather than run slowly.
    /// </summary>
    public static ScalarType? ParsePrecision(string precision, IReadOnlyList<string> devices)
    {
        switch (precision.Trim().ToLowerInvariant())
        {
            case "fp32" or "float32": return null;
            case "bf16" or "bfloat16":
                if (devices.FirstOrDefault(d => Parse(d).type == DeviceType.CPU) is { } cpu && !Native.CpuFeatures.Bf16)
                    throw new ArgumentException($"--precision bf16 on {cpu} needs a CPU with bf16 units (AVX512_BF16 or AMX), and this one has none: " +
                                                "libtorch would emulate it, slower than fp32; use --precision fp32.");
                return ScalarType.BFloat16;
            default: throw new ArgumentException($"Invalid precision '{precision}': expected fp32 or bf16.");
        }
    }

    /// <summary>Where a device's tensors live, as a key: "cpu" for every CPU trainer, "cuda:N" for a GPU.</summary>
    public static string Key(Device device) => device.type == DeviceType.CPU ? "cpu" : $"{device.type.ToString().ToLowerInvariant()}:{Math.Max(0, (int)device.index)}";

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetNativeEnvironment(string name, string value, int overwrite);

    /// <summary>
    /// Makes libtorch's OpenMP threads sleep instead of spinning while idle (OMP_WAIT_POLICY=PASSIVE), unless the
    /// user set a policy. Several trials in one process (or processes on one machine) otherwise burn each other's
    /// cores spinning (PLATFORM.md: 3× slower or worse). Must run before libtorch is loaded: OpenMP reads the
    /// variable once, from the native environment (which .NET's Environment.SetEnvironmentVariable does not change).
    /// </summary>
    /// <remarks>
    /// libgomp's own <c>GOMP_SPINCOUNT</c>, when the user sets it, still decides how long an idle thread spins before it
    /// sleeps (with PASSIVE, not at all where this process runs more OpenMP threads than it has CPUs). A process that has
    /// its cores to itself steps faster with it (docs/bench.md, "OpenMP's idle threads": bf16 on 2 threads 4–20%, fp32
    /// up to 12%, the quick start 8%), and two such processes sharing cores run each other 2.2× slower, which is why it
    /// is the user's choice and not the default.
    /// </remarks>
    public static void PreferPassiveWaiting()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null) return;
        SetNativeEnvironment("OMP_WAIT_POLICY", "PASSIVE", 0);
    }

    /// <summary>How this process's idle OpenMP threads wait, as a bench line records it: "spin N" (the user's
    /// GOMP_SPINCOUNT), the user's OMP_WAIT_POLICY in lower case, or "passive" (<see cref="PreferPassiveWaiting"/>).</summary>
    public static string OpenMpWaiting
        => Environment.GetEnvironmentVariable("GOMP_SPINCOUNT") is { Length: > 0 } spin ? $"spin {spin.Trim()}"
           : Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is { Length: > 0 } policy ? policy.Trim().ToLowerInvariant()
           : "passive";

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mallopt")]
    private static extern int MallocOption(int option, int value);

    /// <summary>
    /// glibc's malloc settings that keep the memory libtorch frees for its next allocations, as GLIBC_TUNABLES: no fresh
    /// mapping below 1 GiB and no trimming. By default glibc serves an allocation above 32 MB with a fresh mmap and returns
    /// it at free, so a step's large tensors (the logits, B·T·V floats: 67 MB at batch 32 × 128 tokens and a 4,096-token
    /// vocabulary) are mapped, zero-filled page by page and unmapped again at every step. Measured on a text sweep
    /// (`text-validation`'s base, 20 steps of full fine-tuning on a trial thread): 9.4 million page faults, 79 s of system
    /// time and 184 s of wall time with glibc's defaults; 0.28 million, 4.4 s and 31 s with these (docs/bench.md).
    /// <para>
    /// Arenas: by default one, glibc's main arena, for every thread. Trials and lock-step members run on threads of their
    /// own, and with an arena each, each arena keeps its own peak (four Preserve trials in lock-step: 1.25× one trial's
    /// memory with one arena, 2.1× with eight), and outside the main arena glibc grows heaps of at most 64 MB and maps
    /// anything larger afresh whatever the threshold, so a text trial's logits are mapped again every step (20 steps of
    /// full fine-tuning on `text-validation`'s base: 1.57 million page faults and 20.2 s with eight arenas, 0.29 million
    /// and 7.3 s with one). The quick start takes 93 s with one arena, 113 s with eight (docs/bench.md). In bf16 (<paramref name="reducedPrecision"/>) oneDNN's threads allocate at once and queue
    /// on one arena's lock (full fine-tuning on 2 threads: 5,467 tokens/s with one, 10,298 with eight), so bf16 gets 8
    /// arenas, with <c>hugetlb=1</c> where the kernel gives transparent huge pages (`madvise` or `always`), which takes the
    /// text trial's faults to 0.07 million (6.3 s). Without huge pages bf16 keeps one arena. The arena count can only be set
    /// before the process starts (a running process's threads keep the arenas they have), hence an environment variable:
    /// `scale` starts itself again with it (Scale.Host's TorchStartup).
    /// </para>
    /// </summary>
    public static string MallocTunables(bool reducedPrecision) => MallocTunablesFor(TransparentHugePages(), reducedPrecision);

    /// <summary><see cref="MallocTunables"/> for a machine with or without transparent huge pages.</summary>
    public static string MallocTunablesFor(bool hugePages, bool reducedPrecision)
        => "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=2147483647:"
           + (hugePages && reducedPrecision ? "glibc.malloc.arena_max=8:glibc.malloc.hugetlb=1" : "glibc.malloc.arena_max=1");

    /// <summary>Whether the kernel gives transparent huge pages to a process that asks (Linux's setting is `always` or `madvise`).</summary>
    public static bool TransparentHugePages(string setting = "/sys/kernel/mm/transparent_hugepage/enabled")
    {
        try
        {
            var text = File.ReadAllText(setting);
            return text.Contains("[always]", StringComparison.Ordinal) || text.Contains("[madvise]", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Whether the user tuned glibc's malloc (then Scale leaves it as it is).</summary>
    public static bool MallocTunedByUser
        => new[] { "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES" }.Any(v => Environment.GetEnvironmentVariable(v) is not null);

    /// <summary>
    /// In a process started without <see cref="MallocTunables"/> (a test host, a library user), the part of them mallopt can
    /// still set: no fresh mapping below 1 GiB and no trimming (the arenas stay as they are). Returns whether glibc took them.
    /// </summary>
    public static bool KeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux() || MallocTunedByUser) return false;
        const int TrimThreshold = -1, MmapThreshold = -3;
        try
        {
            return MallocOption(MmapThreshold, 1 << 30) == 1 && MallocOption(TrimThreshold, int.MaxValue) == 1;
        }
        catch (EntryPointNotFoundException)
        {
            return false;   // not glibc (musl has no mallopt)
        }
        catch (DllNotFoundException)
        {
            return false;
        }
    }

    private static readonly object boostGate = new();
    private static int boosts, unboosted;

    /// <summary>
    /// libtorch's intra-op threads raised to at least <paramref name="threads"/> until disposed: for work that the other
    /// trials of the process wait on (a lock-step group's base forward), so that the cores they leave idle are used.
    /// The count is the process's (libtorch keeps one, whichever thread sets it); the last boost to end restores it.
    /// Results do not depend on it: libtorch's CPU kernels give the same bits at any thread count (tested by the lock-step tests).
    /// </summary>
    public static IDisposable BoostThreads(int threads)
    {
        lock (boostGate)
        {
            if (boosts++ == 0) unboosted = torch.get_num_threads();
            if (threads > torch.get_num_threads()) torch.set_num_threads(threads);
        }
        return new ThreadBoost();
    }

    private sealed class ThreadBoost : IDisposable
    {
        private bool ended;

        public void Dispose()
        {
            lock (boostGate)
            {
                if (ended) return;
                ended = true;
                if (--boosts == 0) torch.set_num_threads(unboosted);
            }
        }
    }

    /// <summary>Sets libtorch's intra-op threads; 0 keeps libtorch's default (all cores).</summary>
    public static void UseThreads(int threads)
    {
        if (threads < 0) throw new ArgumentException($"Invalid thread count {threads}: use 0 for the default or a positive number.");
        if (threads > 0) torch.set_num_threads(threads);
    }
}
