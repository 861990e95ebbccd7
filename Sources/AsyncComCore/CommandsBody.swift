/// The body of an HTTP `POST /v1/commands`, parsed in place: JSON `{"items": ["ip:command", ...]}` or text with
/// one `ip:command` per line. Every item is appended to a buffer as one protocol v1 request line
/// (`REQ 0 item item ...`), so the items then take exactly the path of a `REQ` (`ServerProtocol.handle`): one
/// parser, one lookup, one set of error messages.
///
/// The JSON parser is a small dedicated one for this one shape: no allocation, no tree, escapes decoded in place
/// (a decoded string is never longer than its escaped form). It is fuzzed against Foundation's JSONSerialization
/// (Fuzz/FuzzCommandsBody.swift) and unit-tested against it.
public enum CommandsBody {
    public enum Format: Sendable, Equatable {
        /// `{"items": [...]}`: an object with exactly one key, `items`, an array of strings. Other keys are
        /// refused (a misspelt key must not silently mean "no items").
        case json
        /// One item per line (LF or CRLF); blanks around an item and blank lines are ignored.
        case text
    }

    public struct Failure: Error, Equatable, Sendable {
        public var code: ProtocolErrorCode
        public var message: String
        /// The 0-based position of the item at fault, when one is.
        public var index: Int?

        public init(_ code: ProtocolErrorCode, _ message: String, index: Int? = nil) {
            self.code = code
            self.message = message
            self.index = index
        }
    }

    /// Parses `body` (modified in place when JSON strings hold escapes) and appends ` item` for each item to
    /// `line`. Returns the number of items. Items are not checked here beyond holding no blank or control byte
    /// (which would split them on the `REQ` line); `ServerProtocol.handle` checks them.
    public static func parse(_ body: UnsafeMutableRawBufferPointer, format: Format, into line: ByteBuffer)
        -> Result<Int, Failure>
    {
        guard let base = body.baseAddress, body.count > 0 else {
            return format == .text ? .success(0) : .failure(Failure(.badRequest, "empty body: expected {\"items\": [...]}"))
        }
        let p = base.assumingMemoryBound(to: UInt8.self)
        switch format {
        case .text: return parseText(p, body.count, into: line)
        case .json:
            var parser = JSONItemsParser(p: p, n: body.count, line: line)
            return parser.parse()
        }
    }

    private static func parseText(_ p: UnsafeMutablePointer<UInt8>, _ n: Int, into line: ByteBuffer) -> Result<Int, Failure> {
        var items = 0
        var lines = LineFramer.Lines(UnsafeRawBufferPointer(start: p, count: n))
        while let raw = lines.next() {
            let item = LineFramer.trimmed(raw)
            guard let start = item.baseAddress, !item.isEmpty else { continue }
            if let bad = firstSeparator(start.assumingMemoryBound(to: UInt8.self), item.count) {
                return .failure(Failure(.badItem, "items[\(items)]: \(bad)", index: items))
            }
            line.append(byte: 0x20)
            line.append(item)
            items += 1
        }
        return .success(items)
    }

    /// Why an item cannot go on a `REQ` line as it is: a blank or control byte inside it (nil when none).
    static func firstSeparator(_ p: UnsafePointer<UInt8>, _ n: Int) -> String? {
        for k in 0..<n where p[k] < 0x21 || p[k] == 0x7F {
            return Wire.isBlank(p[k]) ? "blank inside an item" : "control character inside an item"
        }
        return nil
    }
    static func firstSeparator(_ p: UnsafeMutablePointer<UInt8>, _ n: Int) -> String? {
        firstSeparator(UnsafePointer(p), n)
    }
}

/// The JSON parser behind `CommandsBody.parse(_:format: .json, ...)`: RFC 8259 syntax for exactly the shape
/// `{"items": [string, ...]}` with any whitespace, strings with every escape (`\uXXXX` with surrogate pairs).
struct JSONItemsParser {
    let p: UnsafeMutablePointer<UInt8>
    let n: Int
    let line: ByteBuffer
    var i = 0

    typealias Failure = CommandsBody.Failure

    init(p: UnsafeMutablePointer<UInt8>, n: Int, line: ByteBuffer) {
        self.p = p
        self.n = n
        self.line = line
    }

    mutating func parse() -> Result<Int, Failure> {
        var items = -1  // -1: no "items" key seen yet
        skipSpace()
        guard take(UInt8(ascii: "{")) else { return syntax("expected '{' (a JSON object {\"items\": [...]})") }
        skipSpace()
        if !take(UInt8(ascii: "}")) {
            while true {
                guard peek(UInt8(ascii: "\"")) else { return syntax("expected a key in double quotes") }
                let key: (start: Int, count: Int)
                switch string() {
                case .success(let k): key = k
                case .failure(let f): return .failure(f)
                }
                skipSpace()
                guard take(UInt8(ascii: ":")) else { return syntax("expected ':' after a key") }
                skipSpace()
                guard isItemsKey(key) else {
                    return .failure(Failure(.badRequest, "unknown key \(Self.quotedKey(p + key.start, key.count)): the only key is \"items\""))
                }
                guard items < 0 else { return .failure(Failure(.badRequest, "\"items\" given twice")) }
                switch array() {
                case .success(let count): items = count
                case .failure(let f): return .failure(f)
                }
                skipSpace()
                if take(UInt8(ascii: "}")) { break }
                guard take(UInt8(ascii: ",")) else { return syntax("expected ',' or '}' after a value") }
                skipSpace()
            }
        }
        skipSpace()
        guard i == n else { return syntax("unexpected text after the JSON object") }
        guard items >= 0 else { return .failure(Failure(.badRequest, "missing key \"items\": expected {\"items\": [...]}")) }
        return .success(items)
    }

    private mutating func array() -> Result<Int, Failure> {
        guard take(UInt8(ascii: "[")) else { return .failure(Failure(.badRequest, "\"items\" must be an array of strings")) }
        skipSpace()
        var count = 0
        if take(UInt8(ascii: "]")) { return .success(0) }
        while true {
            guard peek(UInt8(ascii: "\"")) else {
                if i < n && isValueStart(p[i]) {
                    return .failure(Failure(.badItem, "items[\(count)]: must be a string \"ip:command\"", index: count))
                }
                return syntax("expected a string")
            }
            let s: (start: Int, count: Int)
            switch string() {
            case .success(let r): s = r
            case .failure(let f): return .failure(f)
            }
            if let bad = CommandsBody.firstSeparator(p + s.start, s.count) {
                return .failure(Failure(.badItem, "items[\(count)]: \(bad)", index: count))
            }
            if s.count == 0 {
                // Nothing would reach the REQ line: name the error the item parser gives an empty item.
                let reason: String
                if case .failure(let e) = ItemSyntax.parse(UnsafeRawBufferPointer(start: p, count: 0)) {
                    reason = e.description
                } else {
                    reason = "empty item"
                }
                return .failure(Failure(.badItem, "items[\(count)]: \(reason)", index: count))
            }
            line.append(byte: 0x20)
            line.append(UnsafeRawBufferPointer(start: p + s.start, count: s.count))
            count += 1
            skipSpace()
            if take(UInt8(ascii: "]")) { return .success(count) }
            guard take(UInt8(ascii: ",")) else { return syntax("expected ',' or ']' in the items array") }
            skipSpace()
        }
    }

    /// A string at `i` (on its opening quote), decoded in place; returns where its decoded bytes are.
    private mutating func string() -> Result<(start: Int, count: Int), Failure> {
        i += 1
        let start = i
        var w = i  // write position: never ahead of `i`
        while true {
            guard i < n else { return syntax("unterminated string") }
            let c = p[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                return .success((start, w - start))
            }
            if c < 0x20 { return syntax("control character in a string (escape it)") }
            if c != UInt8(ascii: "\\") {
                p[w] = c
                w += 1
                i += 1
                continue
            }
            guard i + 1 < n else { return syntax("unterminated string") }
            let e = p[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): p[w] = e
            case UInt8(ascii: "b"): p[w] = 0x08
            case UInt8(ascii: "f"): p[w] = 0x0C
            case UInt8(ascii: "n"): p[w] = 0x0A
            case UInt8(ascii: "r"): p[w] = 0x0D
            case UInt8(ascii: "t"): p[w] = 0x09
            case UInt8(ascii: "u"):
                guard var scalar = hex4() else { return syntax("expected 4 hex digits after \\u") }
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard i + 1 < n, p[i] == UInt8(ascii: "\\"), p[i + 1] == UInt8(ascii: "u") else {
                        return syntax("unpaired surrogate in \\u escape")
                    }
                    i += 2
                    guard let low = hex4(), low >= 0xDC00 && low < 0xE000 else {
                        return syntax("unpaired surrogate in \\u escape")
                    }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    return syntax("unpaired surrogate in \\u escape")
                }
                w += utf8(scalar, at: w)
                continue
            default:
                return syntax("invalid escape '\\\(Unicode.Scalar(e))'")
            }
            w += 1
        }
    }

    private mutating func hex4() -> UInt32? {
        guard i + 4 <= n else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = p[i + k]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            v = v << 4 | UInt32(d)
        }
        i += 4
        return v
    }

    /// Writes `scalar` as UTF-8 at `w`; returns the byte count (at most 4, never more than the escape's 6).
    private func utf8(_ scalar: UInt32, at w: Int) -> Int {
        switch scalar {
        case 0..<0x80:
            p[w] = UInt8(scalar)
            return 1
        case 0x80..<0x800:
            p[w] = UInt8(0xC0 | scalar >> 6)
            p[w + 1] = UInt8(0x80 | scalar & 0x3F)
            return 2
        case 0x800..<0x10000:
            p[w] = UInt8(0xE0 | scalar >> 12)
            p[w + 1] = UInt8(0x80 | scalar >> 6 & 0x3F)
            p[w + 2] = UInt8(0x80 | scalar & 0x3F)
            return 3
        default:
            p[w] = UInt8(0xF0 | scalar >> 18)
            p[w + 1] = UInt8(0x80 | scalar >> 12 & 0x3F)
            p[w + 2] = UInt8(0x80 | scalar >> 6 & 0x3F)
            p[w + 3] = UInt8(0x80 | scalar & 0x3F)
            return 4
        }
    }

    private func isItemsKey(_ key: (start: Int, count: Int)) -> Bool {
        guard key.count == 5 else { return false }
        let q = p + key.start
        return q[0] == UInt8(ascii: "i") && q[1] == UInt8(ascii: "t") && q[2] == UInt8(ascii: "e")
            && q[3] == UInt8(ascii: "m") && q[4] == UInt8(ascii: "s")
    }

    /// Whether `c` starts some JSON value other than a string (so the document is JSON, just not a string).
    private func isValueStart(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"): true
        default: false
        }
    }

    @inline(__always) private mutating func skipSpace() {
        while i < n, p[i] == 0x20 || p[i] == 0x0A || p[i] == 0x0D || p[i] == 0x09 { i += 1 }
    }

    @inline(__always) private func peek(_ c: UInt8) -> Bool { i < n && p[i] == c }

    @inline(__always) private mutating func take(_ c: UInt8) -> Bool {
        guard i < n && p[i] == c else { return false }
        i += 1
        return true
    }

    private func syntax(_ what: String) -> Result<Int, Failure> {
        .failure(Failure(.badRequest, "invalid JSON at byte \(i): \(what)"))
    }

    private func syntax(_ what: String) -> Result<(start: Int, count: Int), Failure> {
        .failure(Failure(.badRequest, "invalid JSON at byte \(i): \(what)"))
    }

    /// A key for an error message: printable, at most 32 bytes, in quotes.
    static func quotedKey(_ p: UnsafeMutablePointer<UInt8>, _ n: Int) -> String {
        "'" + Wire.printable(UnsafeRawBufferPointer(start: p, count: n), limit: 32) + "'"
    }
}
