// Fuzz target "request": bytes from a peer, framed by LineFramer, each line through ServerProtocol.handle
// against a small map. Every reply is checked against a reference model and read back with ClientProtocol.
import AsyncComCore

private let maxLine = 1024
private let maxItems = 8

private let mapText = """
    10.0.0.1:foo:7:1
    10.0.0.1:bar:-3:0.5
    10.0.0.2:foo:9223372036854775807:2
    2001:db8::1:reboot:-9223372036854775808:0.25
    ::ffff:10.0.0.3:zero:0:0
    [fe80::1]:x.y-z_0:+42:86400
    ::1:a:0001:0.000000001
    """

private let fuzzMap: DeviceMap = {
    var text = mapText
    return text.withUTF8 { try! DeviceMap(parsing: UnsafeRawBufferPointer($0), fileName: "request-fuzz-map") }
}()

/// What a line must produce, computed from tokens and a linear map search only.
private enum Expected: Equatable {
    case empty, hello, stats, quit
    case ping(token: [UInt8]?)
    case error(ProtocolErrorCode, id: UInt64?)
    case request(id: UInt64, results: [ItemResult], wait: UInt64)
}

private func reference(_ line: UnsafeRawBufferPointer) -> Expected {
    let t = tokens(line)
    guard let verb = t.first else { return .empty }
    switch lowered(verb) {
    case Array("req".utf8):
        guard t.count >= 2, let id = referenceID(t[1]) else { return .error(.badID, id: nil) }
        let items = t.dropFirst(2)
        guard !items.isEmpty else { return .error(.noItems, id: id) }
        var results: [ItemResult] = []
        var wait: UInt64 = 0
        for (k, item) in items.enumerated() {
            if k >= maxItems { return .error(.tooManyItems, id: id) }
            guard let (device, command) = referenceItem(item) else { return .error(.badItem, id: id) }
            let index = referenceLookup(fuzzMap, device: device, command: command)
            if index < 0 {
                results.append(.unknown)
            } else {
                results.append(.value(fuzzMap.response(at: index)))
                wait = max(wait, fuzzMap.waitNanos(at: index))
            }
        }
        return .request(id: id, results: results, wait: wait)
    case Array("ping".utf8):
        // The rest of the line, blanks trimmed, control bytes shown as '?'.
        let start = verb.baseAddress! - line.baseAddress! + verb.count
        var rest = Array(line[start...])
        while let c = rest.first, isBlank(c) { rest.removeFirst() }
        while let c = rest.last, isBlank(c) { rest.removeLast() }
        if rest.isEmpty { return .ping(token: nil) }
        return .ping(token: rest.map { $0 < 0x20 && $0 != 0x09 || $0 == 0x7F ? UInt8(ascii: "?") : $0 })
    case Array("quit".utf8):
        return .quit
    case Array("hello".utf8):
        guard t.count >= 2 else { return .error(.badRequest, id: nil) }
        return equals(t[1], "1") ? .hello : .error(.unsupportedVersion, id: nil)
    case Array("stats".utf8):
        return .stats
    default:
        return .error(.unknownVerb, id: nil)
    }
}

private func parseReply(_ added: UnsafeRawBufferPointer, _ results: inout [ItemResult]) -> ServerReply {
    ClientProtocol.parse(line: UnsafeRawBufferPointer(rebasing: added.dropLast()), results: &results)
}

private func check(line: UnsafeRawBufferPointer, reply: ByteBuffer) {
    let before = Array(reply.readableView)
    // The reactor's look-ahead hint reads the same hostile bytes (AddressSanitizer checks its word loads).
    ServerProtocol.prefetch(line: line, map: fuzzMap)
    let outcome = ServerProtocol.handle(line: line, map: fuzzMap, maxItems: maxItems, reply: reply)
    let all = reply.readableView
    require(all.count >= before.count && Array(all.prefix(before.count)) == before,
            "handle changed replies already buffered, line \(show(line))")
    let added = UnsafeRawBufferPointer(rebasing: all[before.count...])
    let expected = reference(line)
    let context = "line \(show(line)) -> \(outcome), reply \(show(added)), expected \(expected)"

    switch outcome {
    case .empty, .hello, .stats:
        require(added.isEmpty, "no reply expected: \(context)")
    default:
        // Exactly one line: it ends in LF and holds no other LF or CR, whatever the peer sent.
        require(added.count >= 2 && added.last == 0x0A, "reply is not one LF-terminated line: \(context)")
        require(added.dropLast().allSatisfy { $0 != 0x0A && $0 != 0x0D }, "reply holds LF or CR: \(context)")
    }

    var results: [ItemResult] = []
    switch (outcome, expected) {
    case (.empty, .empty), (.hello, .hello), (.stats, .stats):
        break
    case (.quit, .quit):
        require(equals(added, "BYE\n"), context)
        require(parseReply(added, &results) == .bye, context)
    case (.ping, .ping(let token)):
        let text = token.map { Array("PONG ".utf8) + $0 + [0x0A] } ?? Array("PONG\n".utf8)
        require(Array(added) == text, context)
        guard case .pong(let parsed) = parseReply(added, &results) else { fail("PONG did not parse back: \(context)") }
        require((parsed == nil) == (token == nil), context)
    case (.error(let code, let close), .error(let expectedCode, let id)):
        require(code == expectedCode && !close, context)
        guard case .error(let parsedID, let parsedCode, let message) = parseReply(added, &results) else {
            fail("ERR did not parse back: \(context)")
        }
        require(parsedID == id && parsedCode == code.rawValue && !message.isEmpty, context)
    case (.request(let id, let waitNanos, let commands, let unknown), .request(let expectedID, let expectedResults, let wait)):
        require(id == expectedID && waitNanos == wait && commands == expectedResults.count
                    && unknown == expectedResults.filter({ $0 == .unknown }).count, context)
        var text = "RES \(id)"
        for r in expectedResults {
            switch r {
            case .unknown: text += " ?"
            case .value(let v): text += " \(v)"
            }
        }
        require(Array(added) == Array((text + "\n").utf8), context)
        // What the client makes of it: the same id and one result per item.
        require(parseReply(added, &results) == .results(id: id) && results == expectedResults, context)
        checkReencoded(line: line, id: id, expected: outcome, reply: added)
    default:
        fail("outcome does not match the reference: \(context)")
    }
}

/// The same request as ClientProtocol would send it (single spaces, LF) gives the same outcome and reply.
private func checkReencoded(line: UnsafeRawBufferPointer, id: UInt64, expected: ServerProtocol.Outcome,
                            reply: UnsafeRawBufferPointer) {
    let request = ByteBuffer(capacity: 16)
    ClientProtocol.beginRequest(id: id, to: request)
    for item in tokens(line).dropFirst(2) { ClientProtocol.appendItem(item, to: request) }
    ClientProtocol.endRequest(to: request)
    guard case .line(let framed, let consumed) = LineFramer.next(in: request.readableView, maxLine: Int.max),
          consumed == request.readableBytes else {
        fail("re-encoded request is not one line: \(show(request.readableView))")
    }
    let again = ByteBuffer(capacity: 16)
    let outcome = ServerProtocol.handle(line: framed, map: fuzzMap, maxItems: maxItems, reply: again)
    require(outcome == expected && Array(again.readableView) == Array(reply),
            "re-encoded \(show(framed)) gave \(outcome) \(show(again.readableView)), original \(show(line))")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    // Tiny on purpose: REQ replies then grow (and, after the partial "writes" below, compact) the buffer while
    // handle() holds a mark in it.
    let reply = ByteBuffer(capacity: 16)
    var offset = 0
    var lines = 0
    while true {
        let rest = UnsafeRawBufferPointer(rebasing: input[offset...])
        switch LineFramer.next(in: rest, maxLine: maxLine) {
        case .incomplete:
            require(rest.count < maxLine && !rest.contains(0x0A), "incomplete with an LF or too long: \(rest.count)")
            return 0
        case .tooLong:
            require(rest.count >= maxLine && !rest.prefix(maxLine).contains(0x0A), "tooLong for a short line")
            return 0
        case .line(let line, let consumed):
            require(consumed >= 1 && consumed <= min(rest.count, maxLine) && rest[consumed - 1] == 0x0A,
                    "bad consumed \(consumed) of \(rest.count)")
            require(line.baseAddress == rest.baseAddress && !line.contains(0x0A), "line is not at the start")
            let cr = consumed >= 2 && rest[consumed - 2] == 0x0D
            require(line.count == consumed - (cr ? 2 : 1), "line length \(line.count), consumed \(consumed)")
            if lines & 1 == 1 && reply.readableBytes > 0 { reply.consume((reply.readableBytes + 1) / 2) }
            check(line: line, reply: reply)
            offset += consumed
            lines += 1
        }
    }
}
