import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Testing

/// The small map plus entries whose replies are due far in the future, so that what is pending stays pending
/// for the whole test.
let hardeningMap = smallMap + """

    10.0.0.9:hour:1:3600
    10.0.0.9:minute:2:60
    """

/// The server is still healthy: `client` (when the connection should have stayed open) answers in order after
/// everything sent before, and a brand-new connection answers a correct request.
func expectHealthy(port: UInt16, sameConnection client: LineClient? = nil,
                   sourceLocation: SourceLocation = #_sourceLocation) throws {
    if let client {
        #expect(try client.stillAnswers(), "the connection stopped answering", sourceLocation: sourceLocation)
        #expect(try client.request("REQ 424242 10.0.0.1:fast") == "RES 424242 7", sourceLocation: sourceLocation)
    }
    let fresh = try LineClient(port: port)
    #expect(try fresh.request("REQ 17 10.0.0.1:fast 10.0.0.2:fast") == "RES 17 7 -1", sourceLocation: sourceLocation)
}

/// A fresh one-reactor server answers each line of `cases`, sent in order on one connection, with its expected
/// reply, and is healthy afterwards.
private func expectReplies(_ cases: [(line: String, reply: String)],
                           sourceLocation: SourceLocation = #_sourceLocation) throws {
    let server = try TestServer(map: hardeningMap, reactors: 1)
    let client = try server.client()
    for (line, expected) in cases {
        #expect(try client.request(line) == expected, "for '\(line)'", sourceLocation: sourceLocation)
    }
    try expectHealthy(port: server.port, sameConnection: client, sourceLocation: sourceLocation)
}

@Suite("Server: bad input from peers", .machineSlot(timeLimit: .minutes(2)))
struct ServerBadInputTests {
    @Test("random binary garbage gets ERR lines, never a crash, and the connection keeps working")
    func randomGarbage() async throws {
        try await blocking {
            let server = try TestServer(map: hardeningMap, reactors: 2)
            let client = try server.client()
            var rng = SplitMix64(seed: 0xA5C0_11)
            var garbage = [UInt8](repeating: 0, count: 256 * 1024)
            for i in garbage.indices { garbage[i] = UInt8.random(in: 0...255, using: &rng) }
            try client.send(bytes: garbage)
            try client.send("\nPING after-garbage\n")  // ends the last partial line
            let replies = try client.lines(until: "PONG after-garbage")
            // About one line in 256 bytes; each non-blank one gets exactly one ERR, quoted printable.
            #expect(replies.count > 500)
            for reply in replies {
                #expect(reply.hasPrefix("ERR - UNKNOWN_VERB unknown verb '"), "\(reply)")
                #expect(reply.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "unprintable byte in \(reply)")
            }
            #expect(try client.stats()["errors"] == UInt64(replies.count))
            try expectHealthy(port: server.port, sameConnection: client)
        }
    }

    @Test("NUL bytes and invalid UTF-8 anywhere in a line get precise errors; the connection stays open")
    func nulAndInvalidUTF8() async throws {
        try await blocking {
            let server = try TestServer(map: hardeningMap, reactors: 1)
            let client = try server.client()
            let cases: [([UInt8], String)] = [
                ([0, 0, 0], "ERR - UNKNOWN_VERB unknown verb '???'"),
                (Array("REQ 1 10.0.0.1:fa".utf8) + [0] + Array("st".utf8),
                 "ERR 1 BAD_ITEM item 1: command must be 1-64 characters of A-Z a-z 0-9 _ . -"),
                (Array("REQ 2 10.0.".utf8) + [0] + Array(".1:fast".utf8), "ERR 2 BAD_ITEM item 1: invalid device address"),
                (Array("REQ 3 ".utf8) + [0] + Array(" 10.0.0.1:fast".utf8), "ERR 3 BAD_ITEM item 1: missing ':' between device and command"),
                ([0xFF, 0xFE, 0xC3, 0x28], "ERR - UNKNOWN_VERB unknown verb '???('"),
                (Array("REQ 4 10.0.0.1:f".utf8) + [0xC3, 0x28],
                 "ERR 4 BAD_ITEM item 1: command must be 1-64 characters of A-Z a-z 0-9 _ . -"),
                (Array("REQ ".utf8) + [0xE2, 0x82] + Array(" 10.0.0.1:fast".utf8),
                 "ERR - BAD_ID invalid request id '??': expected 1-20 digits, at most 18446744073709551615"),
                (Array("REQ 5 10.0.0.1:fast ".utf8) + [0xF0, 0x9F, 0x92, 0xA9], "ERR 5 BAD_ITEM item 2: missing ':' between device and command"),
                (Array("PING a".utf8) + [0] + Array("b".utf8), "PONG a?b"),
            ]
            for (bytes, expected) in cases {
                try client.send(bytes: bytes + [0x0A])
                #expect(try client.line() == expected, "for \(bytes)")
            }
            // PING echoes other octets as they came: the reply is still one line.
            try client.send(bytes: Array("PING ".utf8) + [0xFF, 0xC3, 0x0A])
            #expect(try client.readRawLine() == Array("PONG ".utf8) + [0xFF, 0xC3])
            #expect(try client.stats()["errors"] == 8)
            try expectHealthy(port: server.port, sameConnection: client)
        }
    }

    @Test("ids out of range and malformed ids get BAD_ID; the full 64-bit range is accepted")
    func idsOutOfRange() async throws {
        try await blocking {
            let badID = "expected 1-20 digits, at most 18446744073709551615"
            try expectReplies([
                ("REQ 18446744073709551616 10.0.0.1:fast", "ERR - BAD_ID invalid request id '18446744073709551616': \(badID)"),
                ("REQ 99999999999999999999 10.0.0.1:fast", "ERR - BAD_ID invalid request id '99999999999999999999': \(badID)"),
                ("REQ 000000000000000000001 10.0.0.1:fast", "ERR - BAD_ID invalid request id '000000000000000000001': \(badID)"),
                ("REQ -1 10.0.0.1:fast", "ERR - BAD_ID invalid request id '-1': \(badID)"),
                ("REQ +1 10.0.0.1:fast", "ERR - BAD_ID invalid request id '+1': \(badID)"),
                ("REQ 1e3 10.0.0.1:fast", "ERR - BAD_ID invalid request id '1e3': \(badID)"),
                ("REQ 0x10 10.0.0.1:fast", "ERR - BAD_ID invalid request id '0x10': \(badID)"),
                ("REQ 18446744073709551615 10.0.0.1:fast", "RES 18446744073709551615 7"),
                ("REQ 0 10.0.0.1:fast", "RES 0 7"),
                ("REQ 00000000000000000001 10.0.0.1:fast", "RES 1 7"),  // 20 digits, canonical in the reply
            ])
        }
    }

    @Test("empty and half-empty items get NO_ITEMS or BAD_ITEM")
    func emptyItems() async throws {
        try await blocking {
            try expectReplies([
                ("REQ 1  ", "ERR 1 NO_ITEMS expected REQ <id> <device:command>... with at least one item"),
                ("REQ 1 \t \t", "ERR 1 NO_ITEMS expected REQ <id> <device:command>... with at least one item"),
                ("REQ 1 :", "ERR 1 BAD_ITEM item 1: missing device before ':'"),
                ("REQ 1 1.2.3.4:", "ERR 1 BAD_ITEM item 1: missing command after ':'"),
                ("REQ 1 10.0.0.1:fast :", "ERR 1 BAD_ITEM item 2: missing device before ':'"),
                ("REQ 1 10.0.0.1:fast 1.2.3.4:", "ERR 1 BAD_ITEM item 2: missing command after ':'"),
                ("REQ 1 []:fast", "ERR 1 BAD_ITEM item 1: invalid device address"),
                ("REQ", "ERR - BAD_ID missing request id: expected REQ <id> <device:command>..."),
                ("REQ   ", "ERR - BAD_ID missing request id: expected REQ <id> <device:command>..."),
            ])
        }
    }

    @Test("more items than the advertised max_items get TOO_MANY_ITEMS; exactly max_items are answered")
    func tooManyItems() async throws {
        try await blocking {
            let server = try TestServer(map: hardeningMap, reactors: 1)
            let client = try server.client()
            let hello = try client.request("HELLO 1")
            let advertised = hello.split(separator: " ").first { $0.hasPrefix("max_items=") }.flatMap { Int($0.dropFirst(10)) }
            let maxItems = try #require(advertised)
            #expect(maxItems == ServerConfiguration.defaultMaxItems)
            let item = " 10.0.0.1:fast"
            #expect(try client.request("REQ 5" + String(repeating: item, count: maxItems + 1))
                    == "ERR 5 TOO_MANY_ITEMS at most \(maxItems) items per request")
            // Even when the extra item is itself malformed: the count is checked first.
            #expect(try client.request("REQ 6" + String(repeating: item, count: maxItems) + " nonsense")
                    == "ERR 6 TOO_MANY_ITEMS at most \(maxItems) items per request")
            #expect(try client.request("REQ 7" + String(repeating: item, count: maxItems))
                    == "RES 7" + String(repeating: " 7", count: maxItems))
            try expectHealthy(port: server.port, sameConnection: client)
        }
    }

    @Test("a 10 MB line without a newline: LINE_TOO_LONG, closed, and never buffered past max_line")
    func tenMegabyteLine() async throws {
        try await blocking {
            let map = try TempFile(hardeningMap)
            defer { map.remove() }
            let server = try ServerProcess(arguments: ["--map", map.path, "--listen", "tcp://127.0.0.1:0", "--reactors", "1"])
            let port = try server.listeningPort()
            // Warm up the reactor's buffers, then note the peak memory so far.
            let warm = try LineClient(port: port)
            #expect(try warm.request("REQ 1 10.0.0.1:fast") == "RES 1 7")
            let peakBefore = try #require(procStatusKB(server.pid, "VmHWM"))

            let client = try LineClient(port: port)
            let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
            try client.send(bytes: chunk)  // 16 x max_line: the server has given up on this line by now
            #expect(try client.line() == "ERR - LINE_TOO_LONG line longer than 65536 bytes")
            var sent = chunk.count
            while sent < 10 << 20 {
                do { try client.send(bytes: chunk) } catch { break }  // the server may close first: fine
                sent += chunk.count
            }
            shutdown(client.fd, Int32(SHUT_WR))
            #expect(try client.isClosedByPeer())

            let peakAfter = try #require(procStatusKB(server.pid, "VmHWM"))
            #expect(peakAfter - peakBefore < 3 * 1024, "peak RSS grew by \(peakAfter - peakBefore) KiB for a 10 MiB line")
            try expectHealthy(port: port, sameConnection: warm)
            server.signal(SIGTERM)
            #expect(try server.waitForExit(seconds: 15) == 0)
        }
    }

    @Test("half a line, a stall, then the rest: answered; half a line and silence: idle timeout")
    func halfLineThenStall() async throws {
        try await blocking {
            let server = try TestServer(map: hardeningMap, reactors: 1) { $0.idleTimeout = 1 }
            let patient = try server.client()
            try patient.send("REQ 9 10.0.0.1:fa")
            usleep(600_000)  // a stall shorter than the idle timeout
            try patient.send("st 10.0.0.1:sl")
            usleep(600_000)  // and another: each byte received counts as activity
            try patient.send("ow\n")
            #expect(try patient.line() == "RES 9 7 30")
            #expect(try patient.stillAnswers())

            let stalled = try server.client()
            let start = monotonicSeconds()
            try stalled.send("REQ 10 10.0.0.1:fa")
            #expect(try stalled.line() == "ERR - IDLE_TIMEOUT no request for 1 seconds")
            #expect(monotonicSeconds() - start >= 0.9)
            #expect(try stalled.isClosedByPeer())
            try expectHealthy(port: server.port)
        }
    }

    @Test("a burst beyond max-connections: the extra ones get BUSY and close, counted in STATS rejected")
    func burstBeyondMaxConnections() async throws {
        try await blocking {
            let server = try TestServer(map: hardeningMap, reactors: 2) { $0.maxConnections = 20 }
            var clients: [LineClient] = []
            for _ in 0..<60 { clients.append(try server.client()) }
            // Which 20 got in depends on the accept order over two reactors: sort them out by the first reply.
            var admitted: [LineClient] = []
            var busy = 0
            for c in clients {
                try c.send("PING in\n")
                let first = try c.line()
                if first == "PONG in" {
                    admitted.append(c)
                } else {
                    #expect(first == "ERR - BUSY too many connections (max 20)")
                    #expect(try c.isClosedByPeer())
                    busy += 1
                }
            }
            #expect(admitted.count == 20)
            #expect(busy == 40)
            #expect(try admitted[0].stats()["rejected"] == 40)
            #expect(try admitted[0].stats()["connections"] == 20)
            for (i, c) in admitted.enumerated() { #expect(try c.request("REQ \(i) 10.0.0.1:fast") == "RES \(i) 7") }
            let keep = admitted.removeFirst()
            admitted.removeAll()
            clients.removeAll()
            #expect(try eventually { try keep.stats()["connections"] == 1 })
            try expectHealthy(port: server.port, sameConnection: keep)
        }
    }

    @Test("2,000 concurrent connections are all accepted and answered")
    func twoThousandConnections() async throws {
        try await blocking {
            let n = 2_000
            // Each connection costs a descriptor here and one in the (in-process) server.
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            let wanted = rlim_t(3 * n + 1_024)
            if limit.rlim_cur < wanted {
                limit.rlim_cur = min(wanted, limit.rlim_max)
                setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            }
            try #require(limit.rlim_cur >= wanted, "RLIMIT_NOFILE too low for this test: \(limit.rlim_cur)")

            let server = try TestServer(map: hardeningMap, reactors: 2) { $0.maxConnections = 4 * n }
            var clients: [LineClient] = []
            clients.reserveCapacity(n)
            for _ in 0..<n { clients.append(try server.client()) }
            // Every one has a request in flight at the same time (0.3 s wait), then all read their replies.
            for (i, c) in clients.enumerated() { try c.send("REQ \(i) 10.0.0.1:slow\n") }
            let observer = try server.client()
            // The kernel completes every connect before the reactors accept them: poll until both have caught up
            // (reading STATS once raced the accepts under a parallel test run: 1978 of 2001).
            #expect(try eventually(within: 30) { try observer.stats()["connections"] == UInt64(n + 1) })
            #expect(try observer.stats()["rejected"] == 0)
            for (i, c) in clients.enumerated() { #expect(try c.line() == "RES \(i) 30") }
            let total = try observer.stats()
            #expect(total["requests"] == UInt64(n))
            // Both reactors took a share.
            #expect(total["r0.connections_total"]! > 0 && total["r1.connections_total"]! > 0)
            clients.removeAll()
            #expect(try eventually(within: 20) { try observer.stats()["connections"] == 1 })
            try expectHealthy(port: server.port, sameConnection: observer)
        }
    }

    @Test("an abrupt reset with 100,000 commands pending frees them promptly, memory included")
    func resetWithPendingCommands() async throws {
        try await blocking {
            // One reactor, so that the live connection's replies share a delay group (and byte ring) with the
            // doomed one's and the reclaim has to keep them in order.
            let server = try TestServer(map: hardeningMap, reactors: 1)
            let observer = try server.client()
            var live: LineClient? = try server.client()
            var doomed: LineClient? = try server.client()
            doomed!.resetOnClose()

            var liveText = ""
            for i in 0..<500 { liveText += "REQ \(i) 10.0.0.9:hour\n" }
            try live!.send(liveText)
            var text = ""
            for i in 0..<100_000 { text += "REQ \(i) 10.0.0.9:hour\n" }  // due in an hour
            try doomed!.send(text)
            liveText = ""
            for i in 500..<1_000 { liveText += "REQ \(i) 10.0.0.9:hour\n" }
            try live!.send(liveText)
            #expect(try eventually(within: 30) { try observer.stats()["inflight_requests"] == 101_000 })
            let before = try observer.stats()
            #expect(before["inflight_commands"] == 101_000)
            #expect(before["pending_replies"] == 101_000)
            #expect(before["pending_bytes"]! > 100_000 * 8)

            doomed = nil  // RST
            #expect(try eventually(within: 10) { try observer.stats()["pending_replies"] == 1_000 })
            // Exactly the live connection's replies are left, in flight and stored.
            let after = try observer.stats()
            #expect(after["inflight_requests"] == 1_000)
            #expect(after["inflight_commands"] == 1_000)
            let liveBytes = (0..<1_000).reduce(0) { $0 + "RES \($1) 1\n".utf8.count }
            #expect(after["pending_bytes"] == UInt64(liveBytes))
            // The server keeps working, with replies due and pending alike.
            #expect(try live!.request("REQ 5000 10.0.0.1:slow") == "RES 5000 30")
            try expectHealthy(port: server.port, sameConnection: live)
            #expect(try observer.stats()["pending_replies"] == 1_000)
            // Gone before the server stops: its shutdown would otherwise wait an hour for these replies.
            live = nil
            _ = live
            #expect(try eventually { try observer.stats()["connections"] == 1 })
        }
    }

    @Test("repeated resets with 100,000 pending commands each: server RSS stays flat",
          .machineSlot(timeLimit: .minutes(2), cpuBound: true))
    func repeatedResetsKeepMemoryFlat() async throws {
        try await blocking {
            let map = try TempFile(hardeningMap)
            defer { map.remove() }
            let server = try ServerProcess(arguments: ["--map", map.path, "--listen", "tcp://127.0.0.1:0", "--reactors", "1"])
            let port = try server.listeningPort()
            let observer = try LineClient(port: port)
            var text = ""
            for i in 0..<100_000 { text += "REQ \(i) 10.0.0.9:hour\n" }
            var rss: [Int] = []
            for _ in 0..<5 {
                var doomed: LineClient? = try LineClient(port: port)
                doomed!.resetOnClose()
                try doomed!.send(text)
                #expect(try eventually(within: 30) { try observer.stats()["inflight_requests"] == 100_000 })
                doomed = nil
                #expect(try eventually(within: 10) { try observer.stats()["pending_replies"] == 0 })
                #expect(try observer.stats()["pending_bytes"] == 0)
                rss.append(try #require(procStatusKB(server.pid, "VmRSS")))
            }
            // Kept until due, each round would add its ~4 MiB; reclaimed, the memory is reused round after round.
            // (A sanitizer's allocator quarantines freed memory: there only the counters above are meaningful.)
            if !underSanitizer {
                #expect(rss.last! - rss[1] < 2 * 1024, "RSS after each round (KiB): \(rss)")
            }
            try expectHealthy(port: port, sameConnection: observer)
            server.signal(SIGTERM)
            #expect(try server.waitForExit(seconds: 15) == 0)
        }
    }
}
