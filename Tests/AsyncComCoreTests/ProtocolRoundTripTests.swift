import Testing
@testable import AsyncComCore

/// Client encoding -> LineFramer -> ServerProtocol.handle -> LineFramer -> ClientProtocol.parse, on random input.
@Suite struct ProtocolRoundTripTests {
    @Test func randomRequestsAgainstAMap() throws {
        var rng = SplitMix64(seed: 2024)
        var text = ""
        var truth: [String: (Int64, UInt64)] = [:]
        for i in 0..<300 {
            let device = i % 3 == 0 ? "2001:db8::\(String(i, radix: 16))" : "192.168.\(i / 200).\(i % 200)"
            let response = Int64(bitPattern: rng.next()) >> Int64(rng.next() % 64)
            let waitMillis = rng.next() % 5000
            let command = "c\(i % 17)"
            text += "\(device):\(command):\(response):\(waitMillis / 1000).\(threeDigits(waitMillis % 1000))\n"
            truth["\(device)|\(command)"] = (response, waitMillis * 1_000_000)
        }
        let m = try map(text)
        #expect(m.count == 300)

        let wire = ByteBuffer()
        var expected: [(id: UInt64, results: [ItemResult], wait: UInt64)] = []
        for r in 0..<400 {
            let id = r % 5 == 0 ? UInt64.max - UInt64(r) : rng.next() % 1_000_000
            ClientProtocol.beginRequest(id: id, to: wire)
            var results: [ItemResult] = []
            var wait: UInt64 = 0
            for _ in 0..<(1 + Int(rng.next() % 20)) {
                let i = Int(rng.next() % 330)  // some devices are not in the map
                let device = i % 3 == 0 ? "2001:db8::\(String(i, radix: 16))" : "192.168.\(i / 200).\(i % 200)"
                let command = "c\(rng.next() % 2 == 0 ? i % 17 : Int(rng.next() % 17))"
                let spelled = device.contains(":") && rng.next() % 2 == 0 ? "[\(device)]" : device
                ClientProtocol.appendItem("\(spelled):\(command)", to: wire)
                if let (response, w) = truth["\(device)|\(command)"] {
                    results.append(.value(response))
                    wait = max(wait, w)
                } else {
                    results.append(.unknown)
                }
            }
            ClientProtocol.endRequest(to: wire)
            expected.append((id, results, wait))
        }

        let replies = ByteBuffer()
        var k = 0
        while case .line(let line, let consumed) = LineFramer.next(in: wire.readableView, maxLine: 65536) {
            let outcome = ServerProtocol.handle(line: line, map: m, maxItems: 1024, reply: replies)
            let e = expected[k]
            let unknown = e.results.filter { $0 == .unknown }.count
            #expect(outcome == .request(id: e.id, waitNanos: e.wait, commands: e.results.count, unknown: unknown))
            wire.consume(consumed)
            k += 1
        }
        #expect(k == expected.count && wire.isEmpty)

        var results: [ItemResult] = []
        k = 0
        while case .line(let line, let consumed) = LineFramer.next(in: replies.readableView, maxLine: 65536) {
            #expect(ClientProtocol.parse(line: line, results: &results) == .results(id: expected[k].id))
            #expect(results == expected[k].results)
            replies.consume(consumed)
            k += 1
        }
        #expect(k == expected.count)
    }

    @Test func everyServerErrorParsesBack() throws {
        let m = try map("10.0.0.1:foo:1:1\n")
        let lines = ["REQ x 10.0.0.1:foo", "REQ 3", "REQ 4 a", "REQ 5 10.0.0.1:foo 10.0.0.1:foo", "HELLO 9", "HELLO",
                     "BOGUS"]
        let expected: [(UInt64?, String)] = [(nil, "BAD_ID"), (3, "NO_ITEMS"), (4, "BAD_ITEM"), (5, "TOO_MANY_ITEMS"),
                                             (nil, "UNSUPPORTED_VERSION"), (nil, "BAD_REQUEST"), (nil, "UNKNOWN_VERB")]
        var results: [ItemResult] = []
        for (line, (id, code)) in zip(lines, expected) {
            let reply = ByteBuffer()
            let outcome = withBytes(line) { ServerProtocol.handle(line: $0, map: m, maxItems: 1, reply: reply) }
            #expect(outcome == .error(ProtocolErrorCode(rawValue: code)!, close: false))
            guard case .line(let l, _) = LineFramer.next(in: reply.readableView, maxLine: 1024) else {
                Issue.record("no reply to \(line)"); continue
            }
            guard case .error(let gotID, let gotCode, let message) = ClientProtocol.parse(line: l, results: &results) else {
                Issue.record("\(line): reply not parsed as ERR"); continue
            }
            #expect(gotID == id && gotCode == code)
            #expect(!message.isEmpty)
        }
        for code in ProtocolErrorCode.allCases {
            let reply = ByteBuffer()
            ServerProtocol.appendError(id: 12, code: code, message: "why\nnot", to: reply)
            let parsed = withBytes(String(reply.readableString.dropLast())) { ClientProtocol.parse(line: $0, results: &results) }
            #expect(parsed == .error(id: 12, code: code.rawValue, message: "why not"))
        }
    }

    @Test func pingStatsQuitParseBack() throws {
        let m = try map("10.0.0.1:foo:1:1\n")
        var results: [ItemResult] = []
        func roundTrip(_ line: String) -> ServerReply {
            let reply = ByteBuffer()
            _ = withBytes(line) { ServerProtocol.handle(line: $0, map: m, maxItems: 1, reply: reply) }
            return withBytes(String(reply.readableString.dropLast())) { ClientProtocol.parse(line: $0, results: &results) }
        }
        #expect(roundTrip("PING") == .pong(token: nil))
        #expect(roundTrip("PING t-1 2") == .pong(token: "t-1 2"))
        #expect(roundTrip("QUIT") == .bye)
        let stats = ByteBuffer()
        ServerProtocol.appendStats([("connections", 1), ("r0.connections", 1), ("bytes_out", 99)], to: stats)
        let parsed = withBytes(String(stats.readableString.dropLast())) { ClientProtocol.parse(line: $0, results: &results) }
        #expect(parsed == .stats(fields: ["connections": "1", "r0.connections": "1", "bytes_out": "99"]))
        let empty = ByteBuffer()
        ServerProtocol.appendStats([], to: empty)
        #expect(empty.readableString == "STATS\n")
    }

    @Test func clientEncoding() {
        let b = ByteBuffer(capacity: 16)
        ClientProtocol.beginRequest(id: 0, to: b)
        ClientProtocol.appendItem("[::1]:a", to: b)
        withBytes("10.0.0.1:b") { ClientProtocol.appendItem($0, to: b) }
        ClientProtocol.endRequest(to: b)
        ClientProtocol.beginRequest(id: .max, to: b)
        ClientProtocol.appendItem("1.2.3.4:c", to: b)
        ClientProtocol.endRequest(to: b)
        #expect(b.readableString == "REQ 0 [::1]:a 10.0.0.1:b\nREQ 18446744073709551615 1.2.3.4:c\n")
    }

    @Test func resultsArrayIsReused() {
        var results: [ItemResult] = []
        results.reserveCapacity(64)
        let capacity = results.capacity
        for line in ["RES 1 1 2 3", "RES 2 ?", "RES 3 -1 ? 5 6 7"] {
            _ = withBytes(line) { ClientProtocol.parse(line: $0, results: &results) }
        }
        #expect(results == [.value(-1), .unknown, .value(5), .value(6), .value(7)])
        #expect(results.capacity == capacity)
        // A malformed RES leaves no partial results behind.
        #expect(withBytes("RES 4 1 x") { ClientProtocol.parse(line: $0, results: &results) }
                == .malformed(reason: "RES 4: result 2 'x' is not a 64-bit integer or '?'"))
        #expect(results.isEmpty)
    }
}

/// Three digits with leading zeros.
func threeDigits(_ value: UInt64) -> String {
    let s = "\(value)"
    return String(repeating: "0", count: max(0, 3 - s.count)) + s
}
