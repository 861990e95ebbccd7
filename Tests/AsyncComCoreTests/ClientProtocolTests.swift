import Testing
@testable import AsyncComCore

private func parse(_ line: String, _ results: inout [ItemResult]) -> ServerReply {
    withBytes(line) { ClientProtocol.parse(line: $0, results: &results) }
}

@Suite struct ClientProtocolTests {
    @Test func roundTrip() throws {
        let m = try map("10.0.0.1:foo:5:1\n::1:bar:-2:0.5\n")
        let request = ByteBuffer()
        ClientProtocol.beginRequest(id: 99, to: request)
        for item in ["10.0.0.1:foo", "[0::1]:bar", "10.0.0.2:foo"] {
            withBytes(item) { ClientProtocol.appendItem($0, to: request) }
        }
        ClientProtocol.endRequest(to: request)
        #expect(request.readableString == "REQ 99 10.0.0.1:foo [0::1]:bar 10.0.0.2:foo\n")

        guard case .line(let line, let consumed) = LineFramer.next(in: request.readableView, maxLine: 1024) else {
            Issue.record("no line"); return
        }
        #expect(consumed == request.readableBytes)
        let reply = ByteBuffer()
        let outcome = ServerProtocol.handle(line: line, map: m, maxItems: 16, reply: reply)
        #expect(outcome == .request(id: 99, waitNanos: 1_000_000_000, commands: 3, unknown: 1))

        guard case .line(let replyLine, _) = LineFramer.next(in: reply.readableView, maxLine: 1024) else {
            Issue.record("no reply line"); return
        }
        var results: [ItemResult] = []
        #expect(ClientProtocol.parse(line: replyLine, results: &results) == .results(id: 99))
        #expect(results == [.value(5), .value(-2), .unknown])
    }

    @Test func helloRoundTrip() {
        let b = ByteBuffer()
        ClientProtocol.appendHello(to: b)
        #expect(b.readableString == "HELLO 1\n")
        b.clear()
        ServerProtocol.appendHello(HelloInfo(serverVersion: "0.1.0", maxItems: 8, maxLine: 100, maxInflight: 50,
                                             reactors: 2, reactor: 0), to: b)
        var results: [ItemResult] = []
        let reply = withBytes(String(b.readableString.dropLast())) { ClientProtocol.parse(line: $0, results: &results) }
        #expect(reply == .hello(fields: ["version": "1", "server": "asynccom/0.1.0", "max_items": "8", "max_line": "100",
                                         "max_inflight": "50", "reactors": "2", "reactor": "0", "map_generation": "1"]))
    }

    @Test func replies() {
        var r: [ItemResult] = [.unknown]
        #expect(parse("ERR 7 BAD_ITEM item 2: invalid device address", &r)
                == .error(id: 7, code: "BAD_ITEM", message: "item 2: invalid device address"))
        #expect(parse("ERR - BUSY", &r) == .error(id: nil, code: "BUSY", message: ""))
        #expect(parse("PONG", &r) == .pong(token: nil))
        #expect(parse("PONG abc def", &r) == .pong(token: "abc def"))
        #expect(parse("STATS a=1 r0.b=2", &r) == .stats(fields: ["a": "1", "r0.b": "2"]))
        #expect(parse("BYE", &r) == .bye)
        #expect(parse("RES 1 -9223372036854775808 9223372036854775807 ? 0", &r) == .results(id: 1))
        #expect(r == [.value(.min), .value(.max), .unknown, .value(0)])
    }

    @Test func malformed() {
        var r: [ItemResult] = []
        for line in ["", "RES 1", "RES", "RES x 1", "RES 1 9223372036854775808", "RES 1 1x", "RES 1 ??",
                     "ERR", "ERR x CODE", "ERR 1", "HELLO", "HELLO 1 novalue", "STATS a", "WHAT 1"] {
            guard case .malformed = parse(line, &r) else {
                Issue.record("'\(line)' should be malformed"); continue
            }
        }
    }
}
