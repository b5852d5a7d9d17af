using System.Text.Json;
using Scale.Model.Native;
using Scale.Tests.Host;
using static TorchSharp.torch;

namespace Scale.Tests.Model;

public class MklKernelsTests
{
    [Fact]
    public void The_process_runs_on_the_best_path_its_CPU_supports()
    {
        var path = MklKernels.Current;

        Assert.NotNull(path.MklOwn);
        // On a CPU with AVX-512 (these machines' EPYC) the products run on MKL's AVX-512 kernels, whatever MKL would pick alone.
        if (MklKernels.Avx512) Assert.Equal("mkl-avx512", path.Id);
        else Assert.NotEqual("mkl-unselected", path.Id);
        Assert.Null(path.Notice);
    }

    [Fact]
    public void Products_on_the_selected_kernels_match_a_double_precision_reference_on_random_shapes()
    {
        var random = new Random(7);
        for (int trial = 0; trial < 12; trial++)
        {
            int m = random.Next(1, 200), k = random.Next(1, 300), n = random.Next(1, 200);
            var a = Enumerable.Range(0, m * k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            var b = Enumerable.Range(0, k * n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            using var scope = NewDisposeScope();
            var product = matmul(tensor(a).view(m, k), tensor(b).view(k, n)).data<float>().ToArray();

            double worst = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double exact = 0, magnitude = 0;
                    for (int x = 0; x < k; x++)
                    {
                        exact += (double)a[i * k + x] * b[x * n + j];
                        magnitude += Math.Abs((double)a[i * k + x] * b[x * n + j]);
                    }
                    worst = Math.Max(worst, Math.Abs(product[i * n + j] - exact) / Math.Max(magnitude, 1e-30));
                }
            Assert.True(worst < 1e-5, $"{m}×{k}×{n}: relative error {worst:g3}");
        }
    }

    private static string KernelsOfBench(IReadOnlyDictionary<string, string> environment, out string stderr)
    {
        var run = ScaleProcess.RunWith(environment, "bench", "--only", "lora", "--steps", "1", "--warmup", "0", "--threads", "1");
        Assert.True(run.ExitCode == 0, run.Stderr);
        stderr = run.Stderr;
        using var result = JsonDocument.Parse(run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last());
        return result.RootElement.GetProperty("kernels").GetString()!;
    }

    [Fact]
    public void Bench_reports_its_kernel_path_and_the_opt_out_runs_on_MKLs_own_choice()
    {
        var selected = KernelsOfBench(new Dictionary<string, string>(), out var quiet);
        var own = KernelsOfBench(new Dictionary<string, string> { [MklKernels.Variable] = "mkl" }, out _);

        Assert.Equal(MklKernels.Current.Id, selected);
        Assert.Equal(MklKernels.Current.MklOwn, own);
        Assert.DoesNotContain("MKL", quiet);
    }

    [Fact]
    public void A_product_check_that_fails_starts_the_command_again_on_MKLs_own_kernels_saying_so_once()
    {
        var kernels = KernelsOfBench(new Dictionary<string, string> { [MklKernels.CheckFaultVariable] = "fail" }, out var stderr);

        Assert.Equal(MklKernels.Current.MklOwn, kernels);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines, l => l.Contains("starting again on MKL's own kernels", StringComparison.Ordinal));
    }

    [Fact]
    public void An_unknown_setting_is_refused_in_one_line()
    {
        var run = ScaleProcess.RunWith(new Dictionary<string, string> { [MklKernels.Variable] = "fastest" }, "bench", "--only", "lora", "--steps", "1");

        Assert.Equal(2, run.ExitCode);
        Assert.Equal($"scale: {MklKernels.Variable}=fastest: expected auto, mkl, avx2 or avx512.", run.Stderr.Trim());
    }
}
