// Fuzz target "reply": bytes from a (possibly hostile) server, framed by LineFramer, each line through
// ClientProtocol.parse. Checks what was parsed against the tokens and that every parsed reply survives being
// written out again; also round-trips ServerProtocol's ERR and HELLO writers over text taken from the input.
import AsyncComCore

private let maxLine = 4096

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    // Shared across lines, as in the client: a RES must clear what the previous line left.
    var results: [ItemResult] = [.value(-1), .unknown]
    var offset = 0
    while case .line(let line, let consumed) = LineFramer.next(in: UnsafeRawBufferPointer(rebasing: input[offset...]),
                                                              maxLine: maxLine) {
        checkParse(line, &results)
        checkWriters(line)
        offset += consumed
    }
    return 0
}

private func parse(_ text: [UInt8], _ results: inout [ItemResult]) -> ServerReply {
    text.withUnsafeBytes { ClientProtocol.parse(line: $0, results: &results) }
}

private func checkParse(_ line: UnsafeRawBufferPointer, _ results: inout [ItemResult]) {
    let previous = results
    let reply = ClientProtocol.parse(line: line, results: &results)
    let t = tokens(line)
    let verb = t.first.map(lowered) ?? []
    let context = "line \(show(line)) -> \(reply), results \(results)"
    var again: [ItemResult] = []
    switch reply {
    case .results(let id):
        require(verb == Array("res".utf8) && t.count >= 3 && referenceID(t[1]) == id, context)
        // One result per token after the id, each '?' or a 64-bit integer.
        require(results.count == t.count - 2, context)
        for (token, result) in zip(t.dropFirst(2), results) {
            switch result {
            case .unknown: require(equals(token, "?"), context)
            case .value(let v): require(referenceInt64(token) == v, context)
            }
        }
        var text = "RES \(id)"
        for r in results {
            switch r {
            case .unknown: text += " ?"
            case .value(let v): text += " \(v)"
            }
        }
        require(parse(Array(text.utf8), &again) == reply && again == results, "re-parse of \(text): \(context)")
    case .error(let id, let code, let message):
        require(verb == Array("err".utf8) && t.count >= 3, context)
        require(id == (equals(t[1], "-") ? nil : referenceID(t[1])), context)
        require(!code.isEmpty && !code.utf8.contains(where: isBlank), context)
        require(message.utf8.first.map { !isBlank($0) } ?? true && message.utf8.last.map { !isBlank($0) } ?? true,
                "message not trimmed: \(context)")
        let text = "ERR \(id.map { String($0) } ?? "-") \(code) \(message)"
        require(parse(Array(text.utf8), &again) == reply, "re-parse of \(text): \(context)")
    case .pong(let token):
        require(verb == Array("pong".utf8) && (token == nil) == (t.count == 1), context)
        require(parse(Array(("PONG " + (token ?? "")).utf8), &again) == reply, context)
    case .bye:
        require(verb == Array("bye".utf8), context)
    case .hello(let fields):
        require(verb == Array("hello".utf8) && t.count >= 2 && fields["version"] != nil, context)
    case .stats(let fields):
        require(verb == Array("stats".utf8) && fields.count <= t.count - 1, context)
        var text = "STATS"
        for (k, v) in fields.sorted(by: { $0.key < $1.key }) { text += " \(k)=\(v)" }
        require(parse(Array(text.utf8), &again) == reply, "re-parse of \(text): \(context)")
    case .malformed(let reason):
        require(!reason.isEmpty, context)
        if verb == Array("res".utf8) { require(results.isEmpty, "malformed RES left results: \(context)") }
    }
    if verb != Array("res".utf8) { require(results == previous, "a non-RES line changed results: \(context)") }
}

/// ServerProtocol's writers over peer-chosen text: the line they write parses back to what they were given.
private func checkWriters(_ line: UnsafeRawBufferPointer) {
    let text = String(decoding: line, as: UTF8.self)
    let number = line.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    var results: [ItemResult] = []

    let err = ByteBuffer(capacity: 16)
    let code = ProtocolErrorCode.allCases[Int(number % UInt64(ProtocolErrorCode.allCases.count))]
    let id: UInt64? = number & 1 == 0 ? nil : number
    ServerProtocol.appendError(id: id, code: code, message: text, to: err)
    let written = Array(err.readableView)
    require(written.last == 0x0A && written.dropLast().allSatisfy { $0 != 0x0A && $0 != 0x0D },
            "ERR is not one line: \(show(written))")
    // CR and LF became spaces; the reader trims blanks at both ends.
    var message = Array(text.utf8).map { $0 == 0x0A || $0 == 0x0D ? UInt8(0x20) : $0 }
    while let c = message.first, isBlank(c) { message.removeFirst() }
    while let c = message.last, isBlank(c) { message.removeLast() }
    let expected = ServerReply.error(id: id, code: code.rawValue, message: String(decoding: message, as: UTF8.self))
    require(parse(Array(written.dropLast()), &results) == expected, "ERR \(show(written)) did not read back")

    let hello = ByteBuffer(capacity: 16)
    let n = Int(truncatingIfNeeded: number)
    let info = HelloInfo(serverVersion: text, maxItems: n, maxLine: n >> 1, maxInflight: 0 &- n, reactors: n & 7,
                         reactor: Int.min)
    ServerProtocol.appendHello(info, to: hello)
    let helloLine = Array(hello.readableView)
    require(helloLine.last == 0x0A && helloLine.dropLast().allSatisfy { $0 != 0x0A && $0 != 0x0D },
            "HELLO is not one line: \(show(helloLine))")
    guard case .hello(let fields) = parse(Array(helloLine.dropLast()), &results) else {
        fail("HELLO \(show(helloLine)) did not read back")
    }
    let version = Array(text.utf8).map { $0 == 0x0A || $0 == 0x0D || isBlank($0) ? UInt8(ascii: "_") : $0 }
    require(fields["server"] == "asynccom/" + String(decoding: version, as: UTF8.self)
                && fields["version"] == "1" && fields["max_items"] == "\(n)" && fields["max_line"] == "\(n >> 1)"
                && fields["max_inflight"] == "\(0 &- n)" && fields["reactors"] == "\(n & 7)"
                && fields["reactor"] == "\(Int.min)" && fields["map_generation"] == "1" && fields.count == 8,
            "HELLO \(show(helloLine)) read back as \(fields)")
}
