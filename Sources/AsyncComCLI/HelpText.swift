#if canImport(Glibc)
import Glibc
#endif

/// Help discussions that read well at any terminal width. swift-argument-parser wraps a long line at a space and
/// carries the rest to column 0: fine for prose, but an indented list item then loses its indent, and an example
/// command breaks into lines a shell cannot run. `fit` wraps those lines itself, to the width the parser will
/// use, before the parser sees them: list items with a hanging indent, example commands with ` \` continuations.
/// Prose (unindented lines) is left to the parser. No line is ever broken inside a word.
public enum HelpText {
    /// Words that start an example command line (an indented line starting with one of them is shell).
    static let commandWords = ["asynccom-server", "asynccom-client", "asynccom-bench", "swift", "printf", "curl",
                               ".build/", "$bin/", "nc"]

    /// The width swift-argument-parser renders help at: $COLUMNS, else the terminal's, else 80.
    public static var width: Int {
        if let text = getenv("COLUMNS"), let columns = Int(String(cString: text)) { return columns }
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 { return Int(size.ws_col) }
        return 80
    }

    /// `text` with every indented line wrapped to `width` (see the type's comment).
    public static func fit(_ text: String, width: Int = HelpText.width) -> String {
        // The parser keeps a line as it is only when it is shorter than the width.
        let limit = max(width - 1, 24)
        var out: [String] = []
        var continued = false  // the line before was a command ending with ` \`
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let indent = line.prefix { $0 == " " }.count
            var body = line.dropFirst(indent)
            let isCommand = indent > 0 && (continued || commandWords.contains { body.hasPrefix($0) })
            continued = isCommand && body.hasSuffix(" \\")
            guard indent > 0, line.count > limit else {
                out.append(String(line))
                continue
            }
            // An example already continued on the next line keeps its own ` \` on its last line.
            var trailing = ""
            if isCommand && body.hasSuffix(" \\") {
                body = body.dropLast(2)
                trailing = " \\"
            }
            var lines = wrap(isCommand ? shellWords(body) : body.split(separator: " "), indent: indent, limit: limit,
                             continuation: isCommand ? " \\" : "", hanging: indent + (isCommand ? 4 : 2))
            lines[lines.count - 1] += trailing
            out += lines
        }
        return out.joined(separator: "\n")
    }

    /// Words of `body` into lines of at most `limit` columns (a longer word stands alone), the first indented by
    /// `indent`, the rest by `hanging`; every line but the last ends with `continuation` (room is kept for it on
    /// every line).
    static func wrap(_ words: [Substring], indent: Int, limit: Int, continuation: String, hanging: Int) -> [String] {
        var lines: [String] = []
        var current = String(repeating: " ", count: indent)
        var empty = true
        for word in words {
            if !empty && current.count + 1 + word.count + continuation.count > limit {
                lines.append(current + continuation)
                current = String(repeating: " ", count: hanging)
                empty = true
            }
            current += (empty ? "" : " ") + word
            empty = false
        }
        lines.append(current)
        return lines
    }

    /// `command` split at the spaces a shell splits at: a quoted part ('...' or "...") stays one word, so a line
    /// continuation never lands inside quotes.
    static func shellWords(_ command: Substring) -> [Substring] {
        var words: [Substring] = []
        var start: Substring.Index?
        var quote: Character?
        var i = command.startIndex
        while i < command.endIndex {
            let c = command[i]
            if let q = quote {
                if c == q { quote = nil }
            } else if c == " " {
                if let s = start { words.append(command[s..<i]) }
                start = nil
            } else {
                if start == nil { start = i }
                if c == "'" || c == "\"" { quote = c }
            }
            i = command.index(after: i)
        }
        if let s = start { words.append(command[s...]) }
        return words
    }
}
