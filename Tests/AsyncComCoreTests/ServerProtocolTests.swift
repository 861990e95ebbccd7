import Testing
@testable import AsyncComCore

private let sampleMap = """
    10.0.0.1:foo:7:1
    10.0.0.1:bar:-3:0.5
    10.0.0.2:foo:9223372036854775807:2
    2001:db8::1:reboot:-9223372036854775808:0.25
    10.0.0.3:zero:0:0
    """

private func handle(_ line: String, map: DeviceMap, maxItems: Int = 1024, reply: ByteBuffer = ByteBuffer())
    -> (ServerProtocol.Outcome, String)
{
    let outcome = withBytes(line) { ServerProtocol.handle(line: $0, map: map, maxItems: maxItems, reply: reply) }
    return (outcome, reply.readableString)
}

@Suite struct ServerProtocolTests {
    let m: DeviceMap
    init() throws { m = try map(sampleMap) }

    @Test func requestKnownAndUnknown() {
        let (o, r) = handle("REQ 42 10.0.0.1:foo 10.0.0.9:foo 10.0.0.2:foo", map: m)
        #expect(r == "RES 42 7 ? 9223372036854775807\n")
        #expect(o == .request(id: 42, waitNanos: 2_000_000_000, commands: 3, unknown: 1))
    }

    @Test func requestIPv6AndNegatives() {
        let (o, r) = handle("req 1 [2001:db8:0::1]:reboot\t 10.0.0.1:bar", map: m)
        #expect(r == "RES 1 -9223372036854775808 -3\n")
        #expect(o == .request(id: 1, waitNanos: 500_000_000, commands: 2, unknown: 0))
    }

    /// Requests of 1-50 items (so lines of one, several and partial probe groups) against a map of 5,000
    /// entries (long enough for probe chains past a key's own bucket), IPv4 and IPv6 devices, unknown devices and
    /// unknown commands mixed: the reply and outcome equal a reference built from a dictionary of the map's lines.
    /// Guards the grouped, prefetched lookups in `handleRequest` (hash all of a group, then probe, then answer).
    @Test func groupedLookupsMatchAReferenceModel() throws {
        var rng = SplitMix64(seed: 15)
        let commands = ["status", "uptime", "reboot", "a", "get-config.v2"]
        func device(_ k: UInt64) -> String {
            k % 3 == 0 ? "2001:db8::\(String(k, radix: 16))" : "10.\(k >> 16 & 255).\(k >> 8 & 255).\(k & 255)"
        }
        var reference: [String: (response: Int64, waitNanos: UInt64)] = [:]
        var text = ""
        while reference.count < 5_000 {
            let item = "\(device(rng.next() % 4_000)):\(commands[Int(rng.next() % 4)])"  // never the 5th command
            guard reference[item] == nil else { continue }
            let response = Int64(bitPattern: rng.next()) >> (rng.next() % 64)
            let millis = rng.next() % 4 == 0 ? 0 : rng.next() % 3_000
            reference[item] = (response, millis * 1_000_000)
            text += "\(item):\(response):\(Double(millis) / 1000)\n"
        }
        let m = try map(text)
        let known = Array(reference.keys).sorted()
        let reply = ByteBuffer()
        for id in 0..<2_000 {
            var line = "REQ \(id)"
            var expected = "RES \(id)"
            var wait: UInt64 = 0
            var unknown = 0
            let count = 1 + Int(rng.next() % 50)
            for _ in 0..<count {
                let item: String
                switch rng.next() % 8 {
                case 0: item = "\(device(rng.next() % 8_000)):\(commands[Int(rng.next() % 5)])"  // maybe unknown
                default: item = known[Int(rng.next() % UInt64(known.count))]
                }
                line += rng.next() % 5 == 0 ? " \t " : " "
                line += item
                if let entry = reference[item] {
                    expected += " \(entry.response)"
                    wait = max(wait, entry.waitNanos)
                } else {
                    expected += " ?"
                    unknown += 1
                }
            }
            reply.clear()
            let (o, r) = handle(line, map: m, reply: reply)
            #expect(r == expected + "\n", "request \(id)")
            #expect(o == .request(id: UInt64(id), waitNanos: wait, commands: count, unknown: unknown), "request \(id)")
        }
    }

    @Test func allUnknownWaitsZero() {
        let (o, r) = handle("REQ 5 1.1.1.1:x", map: m)
        #expect(r == "RES 5 ?\n")
        #expect(o == .request(id: 5, waitNanos: 0, commands: 1, unknown: 1))
    }

    @Test func blankLines() {
        #expect(handle("", map: m) == (.empty, ""))
        #expect(handle(" \t  ", map: m) == (.empty, ""))
    }

    @Test func idBoundaries() {
        #expect(handle("REQ 18446744073709551615 10.0.0.3:zero", map: m).1 == "RES 18446744073709551615 0\n")
        #expect(handle("REQ 0 10.0.0.3:zero", map: m).1 == "RES 0 0\n")
        let (o, r) = handle("REQ 18446744073709551616 10.0.0.3:zero", map: m)
        #expect(o == .error(.badID, close: false))
        #expect(r == "ERR - BAD_ID invalid request id '18446744073709551616': expected 1-20 digits, at most 18446744073709551615\n")
        #expect(handle("REQ", map: m).1 == "ERR - BAD_ID missing request id: expected REQ <id> <device:command>...\n")
        #expect(handle("REQ -1 a:b", map: m).0 == .error(.badID, close: false))
        #expect(handle("REQ 000000000000000000001 a:b", map: m).0 == .error(.badID, close: false))
    }

    @Test func noItems() {
        let (o, r) = handle("REQ 9   ", map: m)
        #expect(o == .error(.noItems, close: false))
        #expect(r == "ERR 9 NO_ITEMS expected REQ <id> <device:command>... with at least one item\n")
    }

    @Test func maxItemsBoundary() {
        let three = "REQ 3 10.0.0.1:foo 10.0.0.1:foo 10.0.0.1:foo"
        #expect(handle(three, map: m, maxItems: 3).1 == "RES 3 7 7 7\n")
        let (o, r) = handle(three + " 10.0.0.1:foo", map: m, maxItems: 3)
        #expect(o == .error(.tooManyItems, close: false))
        #expect(r == "ERR 3 TOO_MANY_ITEMS at most 3 items per request\n")
    }

    @Test func badItems() {
        #expect(handle("REQ 4 10.0.0.1:foo nocolon", map: m).1 == "ERR 4 BAD_ITEM item 2: missing ':' between device and command\n")
        #expect(handle("REQ 4 10.0.0.256:foo", map: m).1 == "ERR 4 BAD_ITEM item 1: invalid device address\n")
        #expect(handle("REQ 4 10.0.0.1:fo/o", map: m).1 == "ERR 4 BAD_ITEM item 1: command must be 1-64 characters of A-Z a-z 0-9 _ . -\n")
        #expect(handle("REQ 4 10.0.0.1:", map: m).0 == .error(.badItem, close: false))
    }

    @Test func rollbackKeepsEarlierOutput() {
        let reply = ByteBuffer(capacity: 16)
        reply.append("PONG\n")
        reply.consume(2)  // readerIndex > 0: an append may compact and move the bytes
        let long = "REQ 77 " + Array(repeating: "10.0.0.2:foo", count: 50).joined(separator: " ") + " bad"
        let (o, r) = handle(long, map: m, reply: reply)
        #expect(o == .error(.badItem, close: false))
        #expect(r == "NG\nERR 77 BAD_ITEM item 51: missing ':' between device and command\n")
    }

    @Test func hello() {
        #expect(handle("HELLO 1", map: m) == (.hello, ""))
        #expect(handle("hello 2", map: m) == (.error(.unsupportedVersion, close: false),
                                              "ERR - UNSUPPORTED_VERSION this server speaks version 1\n"))
        #expect(handle("HELLO", map: m) == (.error(.badRequest, close: false),
                                            "ERR - BAD_REQUEST HELLO needs a version: HELLO 1\n"))
    }

    @Test func pingStatsQuit() {
        #expect(handle("PING", map: m) == (.ping, "PONG\n"))
        #expect(handle("ping  hello world \t", map: m) == (.ping, "PONG hello world\n"))
        #expect(handle("PING a\rb", map: m) == (.ping, "PONG a?b\n"))
        #expect(handle("Stats", map: m) == (.stats, ""))
        #expect(handle("QUIT", map: m) == (.quit, "BYE\n"))
    }

    @Test func unknownVerb() {
        #expect(handle("FETCH 1", map: m) == (.error(.unknownVerb, close: false), "ERR - UNKNOWN_VERB unknown verb 'FETCH'\n"))
        #expect(handle("REQX 1 a:b", map: m).1 == "ERR - UNKNOWN_VERB unknown verb 'REQX'\n")
        let long = String(repeating: "x", count: 40)
        // Cut at 32 octets, and `...` says it was cut (the one quoting rule, `Wire.forEachPrintable`).
        #expect(handle(long, map: m).1 == "ERR - UNKNOWN_VERB unknown verb '\(String(repeating: "x", count: 32))...'\n")
        let exactly32 = String(repeating: "y", count: 32)
        #expect(handle(exactly32, map: m).1 == "ERR - UNKNOWN_VERB unknown verb '\(exactly32)'\n")
        let binary: [UInt8] = [0x01, 0xFF, 0x41]
        let reply = ByteBuffer()
        _ = withBytes(binary) { ServerProtocol.handle(line: $0, map: m, maxItems: 8, reply: reply) }
        #expect(reply.readableString == "ERR - UNKNOWN_VERB unknown verb '??A'\n")
    }

    @Test func formatting() {
        let b = ByteBuffer()
        ServerProtocol.appendHello(HelloInfo(serverVersion: "1.2.3", maxItems: 1024, maxLine: 65536,
                                             maxInflight: 1_048_576, reactors: 2, reactor: 1, mapGeneration: 7), to: b)
        #expect(b.readableString == "HELLO 1 server=asynccom/1.2.3 max_items=1024 max_line=65536 max_inflight=1048576 reactors=2 reactor=1 map_generation=7\n")
        b.clear()
        ServerProtocol.appendError(id: 5, code: .busy, message: "too many\r\nconnections", to: b)
        ServerProtocol.appendError(id: nil, code: .lineTooLong, message: "line longer than 10 bytes", to: b)
        #expect(b.readableString == "ERR 5 BUSY too many  connections\nERR - LINE_TOO_LONG line longer than 10 bytes\n")
        b.clear()
        ServerProtocol.appendStats([("connections", 3), ("r0.bytes_in", 18446744073709551615)], to: b)
        #expect(b.readableString == "STATS connections=3 r0.bytes_in=18446744073709551615\n")
    }
}
