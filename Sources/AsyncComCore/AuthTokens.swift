/// The tokens a server accepts (`asynccom-server --auth-token-file FILE`) and the decision on a connection's
/// first line (`HELLO 1 token=...`). Pure: no I/O beyond reading the file, no clock.
///
/// File format: one token per line, optionally `name:token` (split at the first colon; the name only labels the
/// token in logs). Blank lines and lines starting with `#` are ignored, blanks around a line too. A token is
/// 16 to 256 printable ASCII characters without blanks; a token that contains `:` needs a name.
public struct AuthTokens: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let token: [UInt8]
        /// 1-based line of the file that defined it.
        public let line: Int
    }

    public static let minTokenLength = 16
    public static let maxTokenLength = 256
    public static let maxNameLength = 64

    public let entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    /// Reads and parses a token file; errors are `FILE:LINE: message`.
    public init(contentsOfFile path: String) throws(InputFileError) {
        let contents = try FileInput.readAll(path)
        try self.init(parsing: contents.bytes, fileName: path)
    }

    /// Parses a token file's text.
    public init(parsing text: UnsafeRawBufferPointer, fileName: String) throws(InputFileError) {
        var entries: [Entry] = []
        var lineNumber = 0
        var lines = LineFramer.Lines(text)
        while let raw = lines.next() {
            lineNumber += 1
            let line = LineFramer.trimmed(raw)
            if line.isEmpty || line[0] == UInt8(ascii: "#") { continue }
            func fail(_ message: String) -> InputFileError {
                InputFileError(file: fileName, line: lineNumber, message: message)
            }
            var name = "line \(lineNumber)"
            var token = line
            if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
                let nameBytes = UnsafeRawBufferPointer(rebasing: line[..<colon])
                guard !nameBytes.isEmpty, nameBytes.count <= Self.maxNameLength,
                      nameBytes.allSatisfy(Self.isNameByte)
                else {
                    throw fail("invalid token name '\(Wire.printable(nameBytes, limit: 32))': expected 1-64 characters of A-Z a-z 0-9 _ . - before the ':'")
                }
                name = String(decoding: nameBytes, as: UTF8.self)
                token = UnsafeRawBufferPointer(rebasing: line[(colon + 1)...])
            }
            if let bad = token.firstIndex(where: { $0 <= 0x20 || $0 >= 0x7F }) {
                throw fail("invalid character \(Self.describe(byte: token[bad])) in token: expected printable ASCII without blanks")
            }
            guard token.count >= Self.minTokenLength else {
                throw fail("token shorter than \(Self.minTokenLength) characters (\(token.count)); make one with: openssl rand -hex 32")
            }
            guard token.count <= Self.maxTokenLength else {
                throw fail("token longer than \(Self.maxTokenLength) characters (\(token.count))")
            }
            let bytes = Array(token)
            if let first = entries.first(where: { $0.token == bytes }) {
                throw fail("duplicate token (first defined on line \(first.line))")
            }
            if entries.contains(where: { $0.name == name }) {
                throw fail("duplicate token name '\(name)'")
            }
            entries.append(Entry(name: name, token: bytes, line: lineNumber))
        }
        guard !entries.isEmpty else {
            throw InputFileError(file: fileName, line: nil, message: "no tokens (one per line, optionally name:token)")
        }
        self.entries = entries
    }

    private static func isNameByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7A) || c == 0x5F || c == 0x2E || c == 0x2D
    }

    private static func describe(byte c: UInt8) -> String {
        if c == 0x20 { return "' ' (a blank)" }
        if c == 0x09 { return "TAB" }
        let hex = String(c, radix: 16, uppercase: true)
        return "0x" + (hex.count == 1 ? "0" + hex : hex)
    }

    /// The index of the entry whose token equals `presented`, or nil. Takes the same time whatever the bytes
    /// presented and whichever entry (if any) matches: every entry is compared over `maxTokenLength` bytes with
    /// no early exit, so the time says nothing about how much of a guess was right.
    public func match(_ presented: UnsafeRawBufferPointer) -> Int? {
        var found = -1
        for (k, entry) in entries.enumerated() {
            let same = Self.constantTimeEqual(presented, entry.token)
            // Branch-free select: found = same ? k : found.
            let mask = 0 &- Int(same)
            found = (k & mask) | (found & ~mask)
        }
        return found >= 0 ? found : nil
    }

    /// 1 when equal, else 0; always reads `maxTokenLength` positions of each (zero past the end).
    @inline(never)
    static func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> UInt8 {
        var diff: UInt = UInt(bitPattern: a.count ^ b.count)
        b.withUnsafeBytes { b in
            let na = a.count
            let nb = b.count
            for i in 0..<maxTokenLength {
                let x = i < na ? a[i] : 0
                let y = i < nb ? b[i] : 0
                diff |= UInt(x ^ y)
            }
        }
        // 1 if diff == 0: the top bit of (diff - 1) & ~diff is set only for zero.
        return UInt8(truncatingIfNeeded: ((diff &- 1) & ~diff) >> (UInt.bitWidth - 1))
    }
}

/// The decision on the first line of a connection to a server that requires a token.
public enum AuthGate {
    public enum Decision: Equatable, Sendable {
        /// `HELLO 1 token=<t>` with a known token: the entry's index in `AuthTokens.entries`.
        case accepted(entry: Int)
        /// `HELLO 1 token=<t>` with an unknown token (or an empty one).
        case failed
        /// Anything else: another verb, `HELLO 1` without a token, a blank line.
        case required
        /// `HELLO` with a version other than 1 (the client learns what this server speaks).
        case unsupportedVersion
    }

    /// Decides on an HTTP `Authorization` header value (nil when absent): `Bearer <token>` ("Bearer" in any
    /// case, blanks around the token ignored) with a known token is accepted, another token fails, anything
    /// else (no header, another scheme) is `.required`.
    public static func checkBearer(_ header: UnsafeRawBufferPointer?, tokens: AuthTokens) -> Decision {
        guard let header, header.count > 0, let p = header.baseAddress else { return .required }
        let n = header.count
        let scheme = Wire.token(p, from: 0, count: n)
        guard scheme.count == 6, Wire.verb(scheme, is: "bearer") else { return .required }
        let start = scheme.baseAddress! - p + scheme.count
        let token = Wire.token(p, from: start, count: n)
        let after = token.baseAddress! - p + token.count
        guard !token.isEmpty, Wire.token(p, from: after, count: n).isEmpty, let k = tokens.match(token) else {
            return .failed
        }
        return .accepted(entry: k)
    }

    /// Decides on one line (terminator stripped). Only `HELLO 1` with a `token=` field authenticates; a token
    /// anywhere else (inside PING, REQ, STATS) is never looked at. The first `token=` field counts.
    public static func check(line: UnsafeRawBufferPointer, tokens: AuthTokens) -> Decision {
        let n = line.count
        guard n > 0, let p = line.baseAddress else { return .required }
        let verb = Wire.token(p, from: 0, count: n)
        guard verb.count == 5, Wire.verb(verb, is: "hello") else { return .required }
        var i = verb.baseAddress! - p + verb.count
        let version = Wire.token(p, from: i, count: n)
        guard version.count > 0 else { return .required }
        guard version.count == 1 && version[0] == UInt8(ascii: "1") else { return .unsupportedVersion }
        i = version.baseAddress! - p + version.count
        while true {
            let field = Wire.token(p, from: i, count: n)
            if field.isEmpty { return .required }
            i = field.baseAddress! - p + field.count
            // `Wire.verb` folds case by OR-ing 0x20, which is exact for letters only: the '=' is compared apart.
            if field.count >= 6, field[5] == UInt8(ascii: "="),
               Wire.verb(UnsafeRawBufferPointer(rebasing: field[0..<5]), is: "token") {
                let token = UnsafeRawBufferPointer(rebasing: field[6...])
                guard !token.isEmpty, let k = tokens.match(token) else { return .failed }
                return .accepted(entry: k)
            }
        }
    }
}
