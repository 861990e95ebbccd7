import AsyncComCore
import AsyncComTestSupport
import Testing

@Suite("asynccom-server executable", .machineSlot(timeLimit: .minutes(1)))
struct ServerExecutableTests {
    @Test("SIGTERM: stop accepting, send every in-flight reply, exit 0")
    func sigtermDrains() async throws {
        try await blocking {
            let map = try TempFile(smallMap)
            defer { map.remove() }
            let server = try ServerProcess(arguments: ["--map", map.path, "--listen", "tcp://127.0.0.1:0", "--reactors", "2"])
            let port = try server.listeningPort()
            let client = try LineClient(port: port)
            var text = ""
            for i in 0..<20 { text += "REQ \(i) 10.0.0.3:second 10.0.0.1:fast\n" }  // each due in 1 s
            try client.send(text + "PING sync\n")
            #expect(try client.line() == "PONG sync")  // every request above has been read
            let signalled = monotonicSeconds()
            server.signal(SIGTERM)
            // New connections are refused while the old one drains.
            #expect(eventually(within: 5) { !LineClient.canConnect(port: port) })
            var ids = Set<Int>()
            for _ in 0..<20 {
                let reply = try client.line().split(separator: " ")
                #expect(reply.count == 4 && reply[0] == "RES" && reply[2] == "3" && reply[3] == "7")
                if reply.count > 1, let id = Int(reply[1]) { ids.insert(id) }
            }
            #expect(ids == Set(0..<20))
            #expect(try client.isClosedByPeer())
            #expect(try server.waitForExit(seconds: 15) == 0, "stderr: \(server.stderr())")
            #expect(monotonicSeconds() - signalled < 15)
            #expect(server.stderr().contains("SIGTERM"))
        }
    }

    @Test("SIGTERM and SIGINT still drain and exit 0 when the parent spawned the server with them blocked",
          arguments: [SIGTERM, SIGINT])
    func inheritedBlockedSignals(signal: Int32) async throws {
        try await blocking {
            // Regression: posix_spawn from a thread that blocks these signals (Foundation's Process, Swift concurrency
            // threads, some supervisors) hands the blocked mask to the child; the server used to ignore them.
            let map = try TempFile(smallMap)
            defer { map.remove() }
            let server = try ServerProcess(
                arguments: ["--map", map.path, "--listen", "tcp://127.0.0.1:0", "--reactors", "2"],
                blockedSignals: [SIGTERM, SIGINT])
            let port = try server.listeningPort()
            let client = try LineClient(port: port)
            try client.send("REQ 1 10.0.0.3:second\nPING sync\n")  // due in 1 s
            #expect(try client.line() == "PONG sync")
            server.signal(signal)
            #expect(try client.line() == "RES 1 3")
            #expect(try client.isClosedByPeer())
            #expect(try server.waitForExit(seconds: 15) == 0, "stderr: \(server.stderr())")
            #expect(server.stderr().contains(signal == SIGTERM ? "SIGTERM" : "SIGINT"))
        }
    }

    @Test("a second signal exits at once with status 130")
    func secondSignal() async throws {
        try await blocking {
            let map = try TempFile(smallMap)
            defer { map.remove() }
            let server = try ServerProcess(arguments: ["--map", map.path, "--listen", "tcp://127.0.0.1:0", "--reactors", "1"])
            let port = try server.listeningPort()
            let client = try LineClient(port: port)
            try client.send("REQ 1 10.0.0.1:long\nPING sync\n")  // due in 5 s: keeps the drain busy
            #expect(try client.line() == "PONG sync")
            server.signal(SIGINT)
            usleep(200_000)
            let start = monotonicSeconds()
            server.signal(SIGINT)
            #expect(try server.waitForExit(seconds: 10) == 130)
            #expect(monotonicSeconds() - start < 4)
        }
    }

    @Test("prints one listening line per endpoint; a bad map exits 2 naming file and line")
    func startupAndBadMap() async throws {
        try await blocking {
            let good = try TempFile(smallMap)
            defer { good.remove() }
            let socketPath = "/tmp/asynccom-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            let server = try ServerProcess(arguments: [
                "--map", good.path, "--listen", "tcp://127.0.0.1:0", "--listen", "unix://\(socketPath)",
                "--reactors", "2", "--log-level", "warning",
            ])
            _ = try server.listeningPort()
            #expect(try server.stdoutLine() == "listening on unix://\(socketPath)")
            server.signal(SIGTERM)
            #expect(try server.waitForExit(seconds: 10) == 0)
            #expect(access(socketPath, F_OK) != 0, "socket file left behind")

            let bad = try TempFile("10.0.0.1:fast:7:0\n10.0.0.1:broken:x:1\n")
            defer { bad.remove() }
            let failing = try ServerProcess(arguments: ["--map", bad.path, "--listen", "tcp://127.0.0.1:0"])
            #expect(try failing.waitForExit(seconds: 10) == 2)
            let message = failing.stderr()
            #expect(message.hasPrefix("asynccom-server: error: \(bad.path):2: "), "\(message)")
            #expect(message.split(separator: "\n").count == 1)
        }
    }

    @Test("--max-connections beyond the open-file limit is refused at startup, naming the limit")
    func maxConnectionsBeyondTheFileLimit() async throws {
        try await blocking {
            let map = try TempFile(smallMap)
            defer { map.remove() }
            // 16,000,000 connections need more files than any kernel allows one process (nr_open <= 2^30 but
            // RLIMIT_NOFILE's hard limit is far below that on any test machine).
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            guard limit.rlim_max < 16_000_064 else { return }
            let server = try ServerProcess(arguments: ["--map", map.path, "--listen", "tcp://127.0.0.1:0",
                                                       "--max-connections", "16000000"])
            // The system's limit, not the options or a file: a run-time failure (1).
            #expect(try server.waitForExit(seconds: 10) == 1)
            let message = server.stderr()
            #expect(message.hasPrefix("asynccom-server: error: --max-connections 16000000 needs"), "\(message)")
            #expect(message.contains("--max-connections 16000000 needs 16000064 open files") && message.contains("\(limit.rlim_max)"),
                    "\(message)")
        }
    }

    @Test("a port already in use exits 1 naming the endpoint")
    func bindFailure() async throws {
        try await blocking {
            let map = try TempFile(smallMap)
            defer { map.remove() }
            let first = try ServerProcess(arguments: ["--map", map.path, "--listen", "tcp://127.0.0.1:0", "--reactors", "2"])
            let port = try first.listeningPort()
            // Even though both would set SO_REUSEPORT, a second server must not share the port.
            let second = try ServerProcess(arguments: ["--map", map.path, "--listen", "tcp://127.0.0.1:\(port)"])
            #expect(try second.waitForExit(seconds: 10) == 1)
            #expect(second.stderr().contains("tcp://127.0.0.1:\(port)"), "\(second.stderr())")
            first.signal(SIGTERM)
            #expect(try first.waitForExit(seconds: 10) == 0)
        }
    }

    @Test("--share-port: two servers on one port, the kernel spreads connections over both, each answers")
    func sharedPort() async throws {
        try await blocking {
            let map = try TempFile(smallMap)
            defer { map.remove() }
            // Each server also listens on a private port, for its own STATS.
            let first = try ServerProcess(arguments: ["--map", map.path, "--listen", "tcp://127.0.0.1:0",
                                                      "--listen", "tcp://127.0.0.1:0", "--reactors", "1", "--share-port"])
            func ports(_ server: ServerProcess) throws -> [UInt16] {
                try server.listeningEndpoints(count: 2).map { e -> UInt16 in
                    guard case .tcp(_, let port) = e else { throw TestFailure("not TCP: \(e)") }
                    return port
                }
            }
            let firstPorts = try ports(first)
            let second = try ServerProcess(arguments: ["--map", map.path, "--listen", "tcp://127.0.0.1:\(firstPorts[0])",
                                                       "--listen", "tcp://127.0.0.1:0", "--reactors", "1", "--share-port"])
            let secondPorts = try ports(second)
            #expect(secondPorts[0] == firstPorts[0])
            // 64 connections: all on one server would have odds of 2^-63.
            var clients: [LineClient] = []
            for i in 0..<64 {
                let c = try LineClient(port: firstPorts[0])
                try c.send("REQ \(i) 10.0.0.1:fast\n")
                clients.append(c)
            }
            for (i, c) in clients.enumerated() { #expect(try c.line() == "RES \(i) 7") }
            let held = try [firstPorts[1], secondPorts[1]].map { port in
                (try LineClient(port: port).stats()["connections"] ?? 0) - 1  // minus the STATS connection
            }
            #expect(held[0] > 0 && held[1] > 0 && held[0] + held[1] == 64, "\(held)")
            for server in [first, second] {
                server.signal(SIGTERM)
                #expect(try server.waitForExit(seconds: 10) == 0)
            }
        }
    }
}
