import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Testing

@Suite("Server: replies over real sockets", .machineSlot(timeLimit: .minutes(1)))
struct ServerReplyTests {
    @Test("every seed command gets the seed map's response")
    func seedMap() async throws {
        try await blocking {
            let root = packageRoot()
            let map = try DeviceMap(contentsOfFile: root + "/data/seed/map.txt")
            var configuration = ServerConfiguration(map: map, endpoints: [.tcp(host: "127.0.0.1", port: 0)], reactors: 2)
            configuration.idleTimeout = 0
            let seed = Server(configuration: configuration)
            let endpoints = try seed.start()
            defer { seed.beginShutdown(); seed.waitUntilStopped() }
            guard case .tcp(_, let port) = endpoints[0] else { throw TestFailure("no tcp endpoint") }

            // Expected responses straight from the file, split from the right as the map format says.
            var expected: [String: String] = [:]
            for line in try readText(root + "/data/seed/map.txt").split(separator: "\n") {
                let f = line.split(separator: ":", omittingEmptySubsequences: false)
                guard f.count >= 4 else { continue }
                let device = f[0..<(f.count - 3)].joined(separator: ":")
                expected["\(device):\(f[f.count - 3])"] = String(f[f.count - 2])
            }
            let items = try readText(root + "/data/seed/commands.txt").split(separator: "\n").map(String.init)
            #expect(items.count == 512)

            let client = try LineClient(port: port)
            var requests: [UInt64: [String]] = [:]
            var text = ""
            for (n, start) in stride(from: 0, to: items.count, by: 16).enumerated() {
                let batch = Array(items[start..<min(start + 16, items.count)])
                requests[UInt64(n)] = batch
                text += "REQ \(n) " + batch.joined(separator: " ") + "\n"
            }
            try client.send(text)
            for _ in 0..<requests.count {
                let reply = try client.line().split(separator: " ").map(String.init)
                #expect(reply.first == "RES")
                guard reply.count >= 2, let id = UInt64(reply[1]), let batch = requests.removeValue(forKey: id) else {
                    Issue.record("unexpected reply \(reply)")
                    continue
                }
                #expect(Array(reply.dropFirst(2)) == batch.map { expected[$0] ?? "?" })
            }
            #expect(requests.isEmpty)
        }
    }

    @Test("a 0.3 s command is answered no sooner than 0.3 s (and within 5 s)")
    func modelledWait() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap)
            let client = try server.client()
            let start = monotonicSeconds()
            #expect(try client.request("REQ 42 10.0.0.1:slow") == "RES 42 30")
            let elapsed = monotonicSeconds() - start
            #expect(elapsed >= 0.3)
            #expect(elapsed < 5)
        }
    }

    @Test("a request's reply is due at its slowest item; an earlier-due reply overtakes it")
    func outOfOrder() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap)
            let client = try server.client()
            let start = monotonicSeconds()
            try client.send("REQ 1 10.0.0.1:slower 10.0.0.1:fast\nREQ 2 10.0.0.1:slow\nREQ 3 10.0.0.1:fast\n")
            #expect(try client.line() == "RES 3 7")
            #expect(try client.line() == "RES 2 30")
            #expect(try client.line() == "RES 1 50 7")
            #expect(monotonicSeconds() - start >= 0.5)
        }
    }

    @Test("unknown devices and commands get '?' in their place")
    func unknownItems() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap)
            let client = try server.client()
            #expect(try client.request("REQ 5 10.0.0.9:fast 10.0.0.1:fast 10.0.0.1:nope ::1:fast 0:0::1:fast") == "RES 5 ? 7 ? 61 61")
            let stats = try client.stats()
            #expect(stats["unknown"] == 2)
            #expect(stats["commands"] == 5)
        }
    }

    @Test("malformed lines get ERR and the connection keeps working")
    func malformed() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap)
            let client = try server.client()
            #expect(try client.request("FROB 1").hasPrefix("ERR - UNKNOWN_VERB"))
            #expect(try client.request("REQ x 10.0.0.1:fast").hasPrefix("ERR - BAD_ID"))
            #expect(try client.request("REQ 9").hasPrefix("ERR 9 NO_ITEMS"))
            #expect(try client.request("REQ 10 10.0.0.1").hasPrefix("ERR 10 BAD_ITEM"))
            #expect(try client.request("HELLO 2").hasPrefix("ERR - UNSUPPORTED_VERSION"))
            // Blank lines are ignored; CRLF is accepted.
            try client.send("\n\r\n")
            #expect(try client.request("REQ 11 10.0.0.1:fast\r") == "RES 11 7")
            #expect(try client.stats()["errors"] == 5)
        }
    }

    @Test("a line over max-line gets LINE_TOO_LONG and the connection is closed after it")
    func lineTooLong() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap) { $0.maxLine = 128 }
            let client = try server.client()
            #expect(try client.request("PING ok") == "PONG ok")
            try client.send("REQ 1 " + String(repeating: "10.0.0.1:fast ", count: 20) + "\n")
            #expect(try client.line() == "ERR - LINE_TOO_LONG line longer than 128 bytes")
            #expect(try client.isClosedByPeer())
            // Without any newline at all, too.
            let other = try server.client()
            try other.send(String(repeating: "x", count: 300))
            #expect(try other.line().hasPrefix("ERR - LINE_TOO_LONG"))
            #expect(try other.isClosedByPeer())
        }
    }

    @Test("what PROTOCOL.md says of edge cases: long blank lines, an unterminated line at EOF, echo and quote octets")
    func documentedEdgeCases() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap) { $0.maxLine = 128 }
            // A line of blanks only is ignored, unless it is longer than max_line.
            let blank = try server.client()
            try blank.send(String(repeating: " ", count: 100) + "\n")
            #expect(try blank.request("PING short-blank-ignored") == "PONG short-blank-ignored")
            try blank.send(String(repeating: " \t", count: 100) + "\n")
            #expect(try blank.line() == "ERR - LINE_TOO_LONG line longer than 128 bytes")
            #expect(try blank.isClosedByPeer())
            // Bytes after the last LF at end of input are dropped, not answered.
            let eof = try server.client()
            try eof.send("PING a\nPING b")
            shutdown(eof.fd, Int32(SHUT_WR))
            #expect(try eof.line() == "PONG a")
            #expect(try eof.isClosedByPeer())
            // PING echoes control octets but HTAB (a CR inside the line too) and DEL as '?', other octets as they are;
            // error quotes turn every octet outside 0x20-0x7E into '?'.
            let echo = try server.client()
            try echo.send(bytes: Array("PING a\u{01}b\tc\rd".utf8) + [0x7F, 0xC3, 0xA9, 0xFF] + Array("\r\n".utf8))
            #expect(try echo.readRawLine() == Array("PONG a?b\tc?d?".utf8) + [0xC3, 0xA9, 0xFF])
            try echo.send(bytes: [0x01] + Array("FOO".utf8) + [0xC3, 0xA9, 0x7F] + Array("\n".utf8))
            #expect(try echo.line() == "ERR - UNKNOWN_VERB unknown verb '?FOO???'")
            #expect(try echo.request("REQ 0x1\u{01} 10.0.0.1:fast") == "ERR - BAD_ID invalid request id '0x1?': expected 1-20 digits, at most 18446744073709551615")
            // HELLO with anything but exactly 1; non-canonical ids are answered canonically, errors included.
            for version in ["01", "1.0", "x", "2"] {
                #expect(try echo.request("HELLO \(version)") == "ERR - UNSUPPORTED_VERSION this server speaks version 1")
            }
            #expect(try echo.request("REQ 007 10.0.0.1:fast") == "RES 7 7")
            #expect(try echo.request("REQ 0008 10.0.0.1:fast 10.0.0.300:fast") == "ERR 8 BAD_ITEM item 2: invalid device address")
        }
    }

    @Test("HELLO advertises the limits, PING echoes, QUIT says BYE after in-flight replies, then closes")
    func handshakeAndQuit() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap, reactors: 1) {
                $0.maxItems = 77
                $0.maxLine = 4096
                $0.maxInflightCommands = 999
            }
            let client = try server.client()
            let hello = try client.request("HELLO 1")
            #expect(hello.hasPrefix("HELLO 1 server=asynccom/"))
            for field in ["max_items=77", "max_line=4096", "max_inflight=999", "reactors=1", "reactor=0"] {
                #expect(hello.split(separator: " ").contains(Substring(field)), "\(field) missing in \(hello)")
            }
            #expect(try client.request("PING") == "PONG")
            #expect(try client.request("ping abc") == "PONG abc")
            try client.send("REQ 1 10.0.0.1:slow\nQUIT\nPING ignored\n")
            #expect(try client.line() == "RES 1 30")
            #expect(try client.line() == "BYE")
            #expect(try client.isClosedByPeer())
        }
    }

    @Test("STATS counters add up after a known workload")
    func statsAddUp() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap, reactors: 2)
            let client = try server.client()
            var received = 0
            for (request, reply) in [
                ("REQ 1 10.0.0.1:fast 10.0.0.2:fast", "RES 1 7 -1"),
                ("REQ 2 10.0.0.1:slow 10.0.0.9:x", "RES 2 30 ?"),
                ("REQ 3 10.0.0.8:fast", "RES 3 ?"),
                ("BOGUS", "ERR - UNKNOWN_VERB"),
                ("PING", "PONG"),
            ] {
                let got = try client.request(request)
                #expect(got.hasPrefix(reply))
                received += got.utf8.count + 1
            }
            let sentBeforeStats = client.bytesSent
            let s = try client.stats()
            #expect(s["connections"] == 1)
            #expect(s["connections_total"] == 1)
            #expect(s["rejected"] == 0)
            #expect(s["requests"] == 3)
            #expect(s["commands"] == 5)
            #expect(s["unknown"] == 2)
            #expect(s["errors"] == 1)
            #expect(s["inflight_requests"] == 0)
            #expect(s["inflight_commands"] == 0)
            #expect(s["bytes_in"] == UInt64(sentBeforeStats + "STATS\n".utf8.count))
            #expect(s["bytes_out"] == UInt64(received))
            #expect(s["reactors"] == 2)
            // Lateness by part: one reply was sent by the timer (REQ 2's wait of 0.3 s); the sums are over it.
            #expect(s["late_replies"] == 1)
            #expect(s["late_timer_us"].map { $0 <= s["late_max_us"]! } == true)
            #expect(s["late_write_us"].map { $0 <= s["late_write_max_us"]! } == true)
            #expect(s["late_queued_us"].map { $0 >= s["late_queued_max_us"]! } == true)
            // Per-reactor values sum to the totals.
            for key in ["connections", "requests", "commands", "unknown", "errors", "bytes_in", "bytes_out"] {
                #expect((s["r0.\(key)"] ?? 0) + (s["r1.\(key)"] ?? 0) == s[key], "\(key)")
            }
            let api = server.server.stats()
            #expect(api.total[.requests] == 3)
            #expect(api.reactors.count == 2)
        }
    }

    @Test("connections spread over the reactors (SO_REUSEPORT)")
    func spreadOverReactors() async throws {
        try await blocking {
            let server = try TestServer(map: smallMap, reactors: 2)
            var clients: [LineClient] = []
            var seen = Set<String>()
            for _ in 0..<32 {
                let c = try server.client()
                let hello = try c.request("HELLO 1")
                if let field = hello.split(separator: " ").first(where: { $0.hasPrefix("reactor=") }) { seen.insert(String(field)) }
                clients.append(c)
            }
            #expect(seen == ["reactor=0", "reactor=1"])
            let s = try clients[0].stats()
            #expect(s["connections"] == 32)
            #expect((s["r0.connections"] ?? 0) > 0)
            #expect((s["r1.connections"] ?? 0) > 0)
        }
    }

    @Test("a Unix socket endpoint serves requests and its file is removed on shutdown")
    func unixSocket() async throws {
        try await blocking {
            let path = "/tmp/asynccom-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            let server = try TestServer(map: smallMap, reactors: 2, extraEndpoints: [.unix(path: path)])
            #expect(server.endpoints.last == .unix(path: path))
            let client = try LineClient(unixPath: path)
            #expect(try client.request("REQ 1 10.0.0.1:fast") == "RES 1 7")
            server.stop()
            #expect(access(path, F_OK) != 0)
        }
    }
}

