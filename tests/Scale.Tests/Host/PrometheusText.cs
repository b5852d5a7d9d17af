using System.Globalization;
using System.Text.RegularExpressions;

namespace Scale.Tests.Host;

/// <summary>
/// A strict reader of the Prometheus text exposition format (version 0.0.4), enough to check what an endpoint
/// serves: `# HELP`/`# TYPE` lines, and samples `name{label="value",…} number [timestamp]`. Anything else fails.
/// </summary>
internal static partial class PrometheusText
{
    public sealed record Sample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})?\s+(?<value>\S+)(\s+-?\d+)?$")]
    private static partial Regex SampleLine();

    [GeneratedRegex(@"(?<key>[a-zA-Z_][a-zA-Z0-9_]*)=""(?<value>(?:[^""\\]|\\.)*)""\s*,?")]
    private static partial Regex Label();

    [GeneratedRegex(@"^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)|EOF)$")]
    private static partial Regex Comment();

    public static IReadOnlyList<Sample> Parse(string text)
    {
        var samples = new List<Sample>();
        foreach (var line in text.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0))
        {
            if (line.StartsWith('#'))
            {
                if (!Comment().IsMatch(line)) throw new FormatException($"Not a Prometheus comment line: {line}");
                continue;
            }
            var match = SampleLine().Match(line);
            if (!match.Success) throw new FormatException($"Not a Prometheus sample line: {line}");
            var labels = new Dictionary<string, string>();
            var labelText = match.Groups["labels"].Value;
            if (labelText.Length > 0)
            {
                var all = Label().Matches(labelText);
                if (string.Concat(all.Select(m => m.Value)).Length != labelText.Length) throw new FormatException($"Bad labels in: {line}");
                foreach (Match m in all) labels[m.Groups["key"].Value] = m.Groups["value"].Value;
            }
            var valueText = match.Groups["value"].Value;
            double value = valueText switch
            {
                "+Inf" => double.PositiveInfinity, "-Inf" => double.NegativeInfinity, "NaN" => double.NaN,
                _ => double.Parse(valueText, NumberStyles.Float, CultureInfo.InvariantCulture),
            };
            samples.Add(new Sample(match.Groups["name"].Value, labels, value));
        }
        return samples;
    }
}
