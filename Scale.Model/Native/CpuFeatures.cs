using System.Runtime.Intrinsics.X86;

namespace Scale.Model.Native;

/// <summary>What the CPU offers beyond what .NET reports: bf16 matrix units, which decide whether bf16 mixed precision pays on the CPU.</summary>
internal static class CpuFeatures
{
    /// <summary>Set to <c>absent</c>, the CPU is taken to have no bf16 units (to test the refusal on a CPU that has them).</summary>
    public const string Bf16Variable = "SCALE_CPU_BF16";

    /// <summary>
    /// Whether the CPU multiplies bf16 natively: AVX512_BF16 (CPUID leaf 7, sub-leaf 1, EAX bit 5, with AVX-512 enabled by
    /// the system) or AMX-BF16 (leaf 7, EDX bit 22). Without them libtorch emulates bf16 products, slower than fp32.
    /// </summary>
    public static bool Bf16 => Environment.GetEnvironmentVariable(Bf16Variable)?.Trim().ToLowerInvariant() != "absent" && Bf16Units;

    private static bool Bf16Units
    {
        get
        {
            if (!X86Base.IsSupported) return false;
            var (maxLeaf, _, _, _) = X86Base.CpuId(0, 0);
            if (maxLeaf < 7) return false;
            var (_, _, _, edx) = X86Base.CpuId(7, 0);
            var (eax1, _, _, _) = X86Base.CpuId(7, 1);
            bool avx512Bf16 = Avx512F.IsSupported && (eax1 & (1 << 5)) != 0;
            bool amxBf16 = (edx & (1 << 22)) != 0;
            return avx512Bf16 || amxBf16;
        }
    }
}
