namespace Scale.Tests.Model;

/// <summary>A directory under the system temp folder, removed with everything in it on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "scale-tests-" + Guid.NewGuid().ToString("N"));

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    /// <summary>
    /// Removes the directory. A recursive delete can meet "Directory not empty" when the file system's directory listing
    /// lags the removals it just made (seen once in CI under load); it is tried again a few times, and a directory that still
    /// cannot be removed is left in the temp folder rather than hiding the test's own outcome behind a clean-up error.
    /// </summary>
    public void Dispose()
    {
        for (int attempt = 1; Directory.Exists(Path); attempt++)
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException e) when (attempt < 5)
            {
                Console.Error.WriteLine($"{Path}: removing it failed ({e.Message}); trying again.");
            }
            catch (IOException e)
            {
                Console.Error.WriteLine($"{Path}: left in place ({e.Message}).");
                return;
            }
        }
    }
}
