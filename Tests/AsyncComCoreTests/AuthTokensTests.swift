import AsyncComCore
import Testing

@Suite("Auth tokens: the token file and the first-line decision")
struct AuthTokensTests {
    static let alice = "0123456789abcdef0123"
    static let bob = "fedcba9876543210fedcba98"

    func tokens(_ text: String) throws -> AuthTokens {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { try AuthTokens(parsing: $0, fileName: "tokens.txt") }
    }

    func error(_ text: String) -> String? {
        do {
            _ = try tokens(text)
            return nil
        } catch {
            return "\(error)"
        }
    }

    func decide(_ line: String, _ t: AuthTokens) -> AuthGate.Decision {
        var l = line
        return l.withUTF8 { AuthGate.check(line: UnsafeRawBufferPointer($0), tokens: t) }
    }

    @Test("names, comments, blanks and CRLF; unnamed tokens are labelled by their line")
    func parses() throws {
        let t = try tokens("# ops tokens\n\n  alice:\(Self.alice)  \r\n\t\(Self.bob)\n")
        #expect(t.entries.map(\.name) == ["alice", "line 4"])
        #expect(t.entries.map { String(decoding: $0.token, as: UTF8.self) } == [Self.alice, Self.bob])
        #expect(t.entries.map(\.line) == [3, 4])
        // A token may contain ':' once it has a name (split at the first colon).
        let colon = try tokens("svc:abc:def:0123456789abcdef\n")
        #expect(String(decoding: colon.entries[0].token, as: UTF8.self) == "abc:def:0123456789abcdef")
    }

    @Test("every bad file is FILE:LINE: message")
    func badFiles() {
        #expect(error("\(Self.alice)\nshort\n")
            == "tokens.txt:2: token shorter than 16 characters (5); make one with: openssl rand -hex 32")
        #expect(error("x:" + String(repeating: "a", count: 257))
            == "tokens.txt:1: token longer than 256 characters (257)")
        #expect(error("bad name:\(Self.alice)")
            == "tokens.txt:1: invalid token name 'bad name': expected 1-64 characters of A-Z a-z 0-9 _ . - before the ':'")
        #expect(error(":\(Self.alice)")?.hasPrefix("tokens.txt:1: invalid token name ''") == true)
        #expect(error("a:0123456789 abcdef0123")
            == "tokens.txt:1: invalid character ' ' (a blank) in token: expected printable ASCII without blanks")
        #expect(error("a:0123456789\u{7F}abcdef0123")
            == "tokens.txt:1: invalid character 0x7F in token: expected printable ASCII without blanks")
        #expect(error("a:\(Self.alice)\nb:\(Self.alice)\n") == "tokens.txt:2: duplicate token (first defined on line 1)")
        #expect(error("a:\(Self.alice)\na:\(Self.bob)\n") == "tokens.txt:2: duplicate token name 'a'")
        #expect(error("# only a comment\n\n") == "tokens.txt: no tokens (one per line, optionally name:token)")
        #expect(error("") == "tokens.txt: no tokens (one per line, optionally name:token)")
    }

    @Test("a missing file names the file")
    func missingFile() {
        #expect(throws: InputFileError(file: "/nonexistent/tokens", line: nil, message: "no such file")) {
            try AuthTokens(contentsOfFile: "/nonexistent/tokens")
        }
    }

    @Test("only HELLO 1 with a known token is accepted; a token anywhere else is not looked at")
    func decisions() throws {
        let t = try tokens("alice:\(Self.alice)\n\(Self.bob)\n")
        #expect(decide("HELLO 1 token=\(Self.alice)", t) == .accepted(entry: 0))
        #expect(decide("  hello\t1  token=\(Self.bob)  ", t) == .accepted(entry: 1))
        #expect(decide("HELLO 1 client=x token=\(Self.bob)", t) == .accepted(entry: 1))
        #expect(decide("HELLO 1 TOKEN=\(Self.alice)", t) == .accepted(entry: 0))
        // Wrong, prefix, extension, empty, binary and overlong tokens.
        #expect(decide("HELLO 1 token=\(Self.alice)x", t) == .failed)
        #expect(decide("HELLO 1 token=\(Self.alice.dropLast())", t) == .failed)
        #expect(decide("HELLO 1 token=", t) == .failed)
        #expect(decide("HELLO 1 token=\u{01}\u{02}\u{FF}", t) == .failed)
        #expect(decide("HELLO 1 token=" + String(repeating: Self.alice, count: 50), t) == .failed)
        // The first token= counts.
        #expect(decide("HELLO 1 token=nope token=\(Self.alice)", t) == .failed)
        // Missing: no token, another verb, the token inside another verb, a blank line.
        #expect(decide("HELLO 1", t) == .required)
        #expect(decide("HELLO", t) == .required)
        #expect(decide("HELLO 1 \(Self.alice)", t) == .required)
        #expect(decide("PING token=\(Self.alice)", t) == .required)
        #expect(decide("REQ 1 10.0.0.1:foo token=\(Self.alice)", t) == .required)
        #expect(decide("STATS token=\(Self.alice)", t) == .required)
        #expect(decide("token=\(Self.alice)", t) == .required)
        #expect(decide("", t) == .required)
        #expect(decide("   ", t) == .required)
        #expect(decide("HELLO 2 token=\(Self.alice)", t) == .unsupportedVersion)
    }

    @Test("match compares whole tokens only")
    func match() throws {
        let t = try tokens("\(Self.alice)\n\(Self.bob)\n")
        func m(_ s: String) -> Int? {
            var s = s
            return s.withUTF8 { t.match(UnsafeRawBufferPointer($0)) }
        }
        #expect(m(Self.alice) == 0)
        #expect(m(Self.bob) == 1)
        #expect(m("") == nil)
        #expect(m(Self.alice + "\0") == nil)
        #expect(m(String(Self.bob.prefix(16))) == nil)
    }
}
