// Fuzz target "auth": the authentication path of a server with tokens. The input is split at its first NUL byte
// (if any): the part before is a token file for AuthTokens(parsing:), the rest peer bytes framed by LineFramer
// with the pre-authentication limit, whose first line goes through AuthGate.check. Both are checked against
// reference models: a plain line splitter for the file, blank-separated tokens and `==` for the gate.
import AsyncComCore

private let preAuthMaxLine = 1024

private let fixedTokens: AuthTokens = {
    var text = "alice:0123456789abcdef0123\nfedcba9876543210fedcba98\nsvc:a:b:c:0123456789abcdef\n"
    return text.withUTF8 { try! AuthTokens(parsing: UnsafeRawBufferPointer($0), fileName: "fixed") }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    if let nul = input.firstIndex(of: 0) {
        let file = UnsafeRawBufferPointer(rebasing: input[..<nul])
        let peer = UnsafeRawBufferPointer(rebasing: input[(nul + 1)...])
        let parsed = checkFile(file)
        checkGate(peer, tokens: parsed ?? fixedTokens)
    } else {
        checkGate(input, tokens: fixedTokens)
        _ = checkFile(input)
    }
    return 0
}

/// Reference token file: lines split at LF, blanks and a CR trimmed, comments skipped, `name:` at the first colon.
private func checkFile(_ text: UnsafeRawBufferPointer) -> AuthTokens? {
    var expected: [(name: String, token: [UInt8], line: Int)] = []
    var expectedError: Int? = nil  // the line of the first problem, 0 for "no tokens"
    let lines = text.split(separator: 0x0A, omittingEmptySubsequences: false)
    for (k, raw) in lines.enumerated() where expectedError == nil {
        if k == lines.count - 1 && raw.isEmpty { break }
        var line = Array(raw)
        while let c = line.first, isBlank(c) { line.removeFirst() }
        while let c = line.last, isBlank(c) || c == 0x0D { line.removeLast() }
        if line.isEmpty || line[0] == UInt8(ascii: "#") { continue }
        var name = "line \(k + 1)"
        var token = line
        if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
            let n = Array(line[..<colon])
            let nameOK = !n.isEmpty && n.count <= 64 && n.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A)
                    || $0 == 0x5F || $0 == 0x2E || $0 == 0x2D
            }
            if !nameOK { expectedError = k + 1; break }
            name = String(decoding: n, as: UTF8.self)
            token = Array(line[(colon + 1)...])
        }
        if !token.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) || token.count < 16 || token.count > 256
            || expected.contains(where: { $0.token == token || $0.name == name }) {
            expectedError = k + 1
            break
        }
        expected.append((name, token, k + 1))
    }
    if expectedError == nil && expected.isEmpty { expectedError = 0 }
    do {
        let parsed = try AuthTokens(parsing: text, fileName: "fuzz")
        require(expectedError == nil, "file \(show(text)) parsed, reference error on line \(expectedError!)")
        require(parsed.entries.map(\.name) == expected.map(\.name), "names \(parsed.entries.map(\.name)) vs \(expected.map(\.name))")
        require(parsed.entries.map(\.token) == expected.map(\.token), "tokens differ for \(show(text))")
        require(parsed.entries.map(\.line) == expected.map(\.line), "lines differ for \(show(text))")
        return parsed
    } catch {
        require(expectedError != nil, "file \(show(text)) refused (\(error)) but the reference accepts it")
        require((error.line ?? 0) == expectedError!, "error \(error) but the reference says line \(expectedError!)")
        require(!error.description.contains("\n"), "multi-line error \(error)")
        return nil
    }
}

/// Reference gate: only `HELLO 1` with a first `token=` field equal to an entry's token is accepted.
private func checkGate(_ peer: UnsafeRawBufferPointer, tokens known: AuthTokens) {
    guard case .line(let line, let consumed) = LineFramer.next(in: peer, maxLine: preAuthMaxLine) else { return }
    require(consumed <= preAuthMaxLine && line.count < consumed, "framing handed out \(consumed) bytes")
    let decision = AuthGate.check(line: line, tokens: known)
    let t = tokens(line)
    var expected = AuthGate.Decision.required
    if t.count >= 2 && lowered(t[0]) == Array("hello".utf8) {
        if !equals(t[1], "1") {
            expected = .unsupportedVersion
        } else if let field = t.dropFirst(2).first(where: { $0.count >= 6 && lowered(UnsafeRawBufferPointer(rebasing: $0[0..<6])) == Array("token=".utf8) }) {
            let token = Array(field[6...])
            if let k = known.entries.firstIndex(where: { $0.token == token }) {
                expected = .accepted(entry: k)
            } else {
                expected = .failed
            }
        }
    }
    require(decision == expected, "line \(show(line)) -> \(decision), reference \(expected)")
}
