using System.Text.RegularExpressions;

namespace Scale.Host.Commands;

/// <summary>
/// Secrets taken out of text a user or an operator reads (errors, console logs): the value of a key=value pair whose key
/// names a secret (a connection string's Password=…, a token=…), and the password of a URI's user information
/// (postgres://user:secret@host). Libraries put connection strings and URIs in their messages as they were given.
/// </summary>
internal static partial class Redaction
{
    public const string Hidden = "***";

    [GeneratedRegex(@"(?<key>\b(?:password|pwd|passwd|secret|token|api[_-]?key|access[_-]?key)\s*=\s*)(?<value>""[^""]*""|'[^']*'|[^;&\s,""']+)", RegexOptions.IgnoreCase)]
    private static partial Regex KeyValue();

    [GeneratedRegex(@"(?<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?<value>[^@\s/]+)(?=@)", RegexOptions.IgnoreCase)]
    private static partial Regex UriPassword();

    /// <summary><paramref name="text"/> with every secret value replaced by <see cref="Hidden"/>.</summary>
    public static string Redact(string text)
    {
        text = KeyValue().Replace(text, m => m.Groups["key"].Value + Hidden);
        return UriPassword().Replace(text, m => m.Groups["head"].Value + Hidden);
    }

    /// <summary>Whether a value given on the command line holds a secret (then it is visible to every user in the process list).</summary>
    public static bool HoldsSecret(string value) => Redact(value) != value;
}
