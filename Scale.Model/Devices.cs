using TorchSharp;
using static TorchSharp.torch;

namespace Scale.Model;

/// <summary>Device selection, a runtime option: "cpu", "cuda" or "cuda:N".</summary>
public static class Devices
{
    public static Device Parse(string name)
    {
        var text = name.Trim().ToLowerInvariant();
        if (text == "cpu") return CPU;
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
        throw new ArgumentException($"Invalid device '{name}': expected cpu, cuda or cuda:N.");
    }

    /// <summary>Sets libtorch's intra-op threads; 0 keeps libtorch's default (all cores).</summary>
    public static void UseThreads(int threads)
    {
        if (threads < 0) throw new ArgumentException($"Invalid thread count {threads}: use 0 for the default or a positive number.");
        if (threads > 0) torch.set_num_threads(threads);
    }
}
