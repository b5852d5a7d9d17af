using System.Text.Json;
using Scale.Tests.Host;

namespace Scale.Tests.Model;

/// <summary>How a bench line records the way libtorch's idle OpenMP threads waited: passive by default, the user's GOMP_SPINCOUNT when set.</summary>
public class OpenMpWaitingTests
{
    private static string WaitingOfBench(IReadOnlyDictionary<string, string> environment)
    {
        var run = ScaleProcess.RunWith(environment, "bench", "--only", "preserve", "--steps", "1", "--warmup", "0", "--threads", "2");
        Assert.True(run.ExitCode == 0, run.Stderr);
        using var result = JsonDocument.Parse(run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last());
        return result.RootElement.GetProperty("omp_waiting").GetString()!;
    }

    [Fact]
    public void A_bench_line_says_passive_by_default_and_the_spin_count_the_user_gave()
    {
        Assert.Equal("passive", WaitingOfBench(new Dictionary<string, string>()));
        Assert.Equal("spin 1000000", WaitingOfBench(new Dictionary<string, string> { ["GOMP_SPINCOUNT"] = "1000000" }));
        Assert.Equal("active", WaitingOfBench(new Dictionary<string, string> { ["OMP_WAIT_POLICY"] = "ACTIVE" }));
    }
}
