import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Testing

@Suite("Server: limits and backpressure", .machineSlot(timeLimit: .minutes(1)))
struct ServerLimitTests {
    @Test("an in-flight limit out of range is refused with the range it must be in")
    func maxInflightRange() throws {
        // Found from outside: 4294967296 was refused as "must be at least 1".
        for bad in [0, Int(UInt32.max) + 1] {
            var c = ServerConfiguration(map: try TestServer.map(smallMap), reactors: 1)
            c.maxInflightCommands = bad
            #expect { try c.validate() } throws: { error in
                "\(error)".contains("max in-flight commands must be 1...4294967295 (got \(bad))")
            }
        }
        var c = ServerConfiguration(map: try TestServer.map(smallMap), reactors: 1)
        c.maxInflightCommands = Int(UInt32.max)
        #expect(throws: Never.self) { try c.validate() }
    }

    @Test("beyond max-connections a new connection gets BUSY and is closed; a freed place is reusable")
    func maxConnections() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap, reactors: 2) { $0.maxConnections = 2 }
            let a = try server.client()
            var b: LineClient? = try server.client()
            #expect(try a.request("PING a") == "PONG a")
            #expect(try b!.request("PING b") == "PONG b")
            let c = try server.client()
            #expect(try c.line() == "ERR - BUSY too many connections (max 2)")
            #expect(try c.isClosedByPeer())
            #expect(try a.stats()["rejected"] == 1)
            b = nil  // closes it
            _ = b
            #expect(try eventually { try a.stats()["connections"] == 1 })
            let d = try server.client()
            #expect(try d.request("PING d") == "PONG d")
            #expect(try a.stillAnswers())
        }
    }

    @Test("an idle connection is told IDLE_TIMEOUT and closed; one waiting for a reply is not")
    func idleTimeout() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap, reactors: 1) { $0.idleTimeout = 1 }
            let start = monotonicSeconds()
            let idle = try server.client()
            let busy = try server.client()
            try busy.send("REQ 1 10.0.0.3:second 10.0.0.1:slower\n")  // due in 1 s
            try busy.send("REQ 2 10.0.0.1:long\n")  // due in 5 s: in flight the whole time
            #expect(try idle.line().hasPrefix("ERR - IDLE_TIMEOUT"))
            #expect(monotonicSeconds() - start >= 0.9)
            #expect(try idle.isClosedByPeer())
            #expect(try busy.line() == "RES 1 3 50")
            #expect(try busy.line() == "RES 2 -5")
            // Nothing in flight any more: now it goes idle too.
            #expect(try busy.line().hasPrefix("ERR - IDLE_TIMEOUT"))
            #expect(try busy.isClosedByPeer())
            try expectHealthy(port: server.port)
        }
    }

    @Test("a peer that sends without reading is held at the in-flight cap; others are still served")
    func inflightBackpressure() async throws {
        try await blocking {
            let cap = 1000
            let server = try TestServer(map: smallMap, reactors: 2) {
                $0.maxInflightCommands = cap
                $0.outputHighWater = 64 * 1024
            }
            let greedy = try server.client(receiveBuffer: 4096, sendBuffer: 4096)
            let observer = try server.client()
            // 5 s requests, as fast as the socket takes them, until the server has stopped reading for a while.
            var text = ""
            for i in 0..<1_000_000 { text += "REQ \(i) 10.0.0.1:long\n" }  // ~24 MiB, more than any socket buffers
            let sent = try sendUntilStalled(greedy, text)
            #expect(sent < text.utf8.count, "the server read everything: no backpressure")
            let s = try observer.stats()
            #expect(s["inflight_commands"]! > 0)
            #expect(s["inflight_commands"]! <= UInt64(cap + 1))
            #expect(try observer.request("REQ 7 10.0.0.1:fast") == "RES 7 7")
        }
    }

    @Test("a peer that never reads its replies holds at most the output high water (plus a read chunk)")
    func outputBackpressure() async throws {
        try await blocking {
            let highWater = 64 * 1024
            let server = try TestServer(map: smallMap, reactors: 1) { $0.outputHighWater = highWater }
            let greedy = try server.client(receiveBuffer: 4096, sendBuffer: 4096)
            // PING and PONG lines have the same length, so bytes_in - bytes_out is what the server holds.
            let token = String(repeating: "p", count: 1000)
            var text = ""
            for _ in 0..<32_768 { text += "PING \(token)\n" }  // 32 MiB
            let sent = try sendUntilStalled(greedy, text)
            #expect(sent < text.utf8.count, "the server read everything: no backpressure")
            let observer = try server.client()
            #expect(try observer.request("PING still-here") == "PONG still-here")
            let s = try observer.stats()
            let held = Int(s["bytes_in"]!) - Int(s["bytes_out"]!) - "STATS\n".utf8.count
            #expect(held <= highWater + 2 * 65536 + 2048, "server holds \(held) bytes")
            // The kernel buffers are full too: the server really stopped reading, it did not just fall behind.
            #expect(Int(s["bytes_in"]!) < text.utf8.count)
        }
    }

    @Test("a peer whose unsent output makes no progress for the idle timeout is closed")
    func stalledReaderClosed() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap, reactors: 1) {
                $0.idleTimeout = 1
                $0.outputHighWater = 16 * 1024
            }
            let greedy = try server.client(receiveBuffer: 4096, sendBuffer: 4096)
            let token = String(repeating: "q", count: 1000)
            var text = ""
            for _ in 0..<16_384 { text += "PING \(token)\n" }
            _ = try? sendUntilStalled(greedy, text)  // may already fail with ECONNRESET: that is the point
            let observer = try server.client()
            #expect(try eventually(within: 10) { try observer.stats()["connections"] == 1 })
        }
    }

    @Test("closing a connection with pending requests frees them at once")
    func closeFreesPending() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap, reactors: 2)
            let observer = try server.client()
            var doomed: LineClient? = try server.client()
            var text = ""
            for i in 0..<100 { text += "REQ \(i) 10.0.0.1:long 10.0.0.1:fast\n" }
            try doomed!.send(text)
            #expect(try eventually { try observer.stats()["inflight_requests"] == 100 })
            #expect(try observer.stats()["inflight_commands"] == 200)
            let closedAt = monotonicSeconds()
            doomed = nil
            _ = doomed
            #expect(try eventually(within: 3) { try observer.stats()["inflight_requests"] == 0 })
            #expect(monotonicSeconds() - closedAt < 4.5, "freed only when due, not at close")
            #expect(try observer.stats()["inflight_commands"] == 0)
            // The stale entries fall due later and must be skipped without harm.
            #expect(try observer.request("REQ 1 10.0.0.1:fast") == "RES 1 7")
        }
    }

    @Test("reply coalescing: a reply falling due soon after the timer fired waits out the coalescing gap")
    func replyCoalescing() async throws {
        try await blocking {
            let map = "10.0.0.1:a:1:0.2\n10.0.0.1:b:2:0.01\n"
            let server = try TestServer(map: map, reactors: 1) { $0.replyCoalescing = 1 }
            defer { server.stop() }
            let client = try server.client()
            #expect(try client.request("REQ 1 10.0.0.1:a") == "RES 1 1")
            // The timer fired for REQ 1 just before its reply came; REQ 2 falls due 10 ms later but the timer
            // may not fire again until 1 s after that firing (without coalescing it would answer in ~10 ms).
            let start = monotonicSeconds()
            #expect(try client.request("REQ 2 10.0.0.1:b") == "RES 2 2")
            let elapsed = monotonicSeconds() - start
            #expect(elapsed >= 0.5, "answered after \(elapsed) s")
            #expect(elapsed < 10)
            // Nothing is ever early, coalesced or not.
            let again = monotonicSeconds()
            #expect(try client.request("REQ 3 10.0.0.1:a") == "RES 3 1")
            #expect(monotonicSeconds() - again >= 0.2)
        }
    }

    @Test("out-of-range coalescing and receive-buffer settings are rejected")
    func timingSettingsValidated() throws {
        let map = try TestServer.map(smallMap)
        for bad in [-0.1, 1.5] {
            #expect(throws: ServerError.self) { try ServerConfiguration(map: map, replyCoalescing: bad).validate() }
        }
        for bad in [-1, 100, 2 << 30] {
            #expect(throws: ServerError.self) { try ServerConfiguration(map: map, receiveBuffer: bad).validate() }
        }
        #expect(throws: Never.self) { try ServerConfiguration(map: map, replyCoalescing: 0, receiveBuffer: 0).validate() }
    }
}

/// Sends `text` without blocking until it is all sent or the socket has accepted nothing for `stallSeconds` in a
/// row. Returns the bytes sent.
func sendUntilStalled(_ client: LineClient, _ text: String, stallSeconds: Double = 1.5) throws -> Int {
    var t = text
    return try t.withUTF8 { bytes -> Int in
        var offset = 0
        var stalledSince: Double?
        let giveUp = monotonicSeconds() + 30
        while offset < bytes.count && monotonicSeconds() < giveUp {
            let n = try client.sendSome(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[offset...])))
            if n > 0 {
                offset += n
                stalledSince = nil
            } else {
                let now = monotonicSeconds()
                if let since = stalledSince {
                    if now - since > stallSeconds { break }
                } else {
                    stalledSince = now
                }
                usleep(10_000)
            }
        }
        return offset
    }
}
