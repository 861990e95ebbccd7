import AsyncComCore
import AsyncComTestSupport
import Testing

/// A job for the fault tests: 1,000 devices x 2 commands, every entry waits `wait` seconds and answers its own
/// entry number; the commands file cycles `count` times over the entries.
struct FaultJob {
    static let entries = 2_000
    let map: TempFile
    let commands: TempFile
    let count: Int
    let sum: Int

    init(count: Int, wait: String) throws {
        var mapText = "# fault-test fleet\n"
        var items: [String] = []
        items.reserveCapacity(Self.entries)
        for e in 0..<Self.entries {
            let device = e / 2
            let item = "10.0.\(device / 256).\(device % 256):\(e % 2 == 0 ? "a" : "b")"
            items.append(item)
            mapText += "\(item):\(e):\(wait)\n"
        }
        var commandsText = ""
        commandsText.reserveCapacity(count * 16)
        for k in 0..<count { commandsText += items[k % Self.entries] + "\n" }
        map = try TempFile(mapText)
        commands = try TempFile(commandsText)
        self.count = count
        sum = (0..<count).reduce(0) { $0 + $1 % Self.entries }
    }

    func remove() {
        map.remove()
        commands.remove()
    }

    /// `asynccom-client` with 100 commands a request and `window` requests in flight (1,000: the whole job at
    /// once), with room to reconnect to a server that comes back within 30 s.
    func startClient(port: UInt16, window: Int = 1_000) throws -> ChildProcess {
        try ChildProcess("asynccom-client", [
            "--server", "tcp://127.0.0.1:\(port)", "--batch", "100", "--window", "\(window)",
            "--connect-timeout", "30", "--json", "--quiet", commands.path,
        ])
    }

    /// Waits up to `seconds` for `client` (from `startClient`) and expects it to have exited 0 with every command
    /// of the job answered (the sum and count of the replies, none failed); returns its JSON summary.
    @discardableResult
    func expectCompleted(_ client: ChildProcess, within seconds: Double,
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let status = try client.wait(seconds: seconds)
        let summary = client.stdout
        #expect(status == 0, "client stderr: \(client.stderr)", sourceLocation: sourceLocation)
        #expect(jsonInteger(summary, "sum") == sum, sourceLocation: sourceLocation)
        #expect(jsonInteger(summary, "ok") == count, sourceLocation: sourceLocation)
        #expect(jsonInteger(summary, "failed") == 0, sourceLocation: sourceLocation)
        return summary
    }

    func startServer(port: UInt16 = 0, reactors: Int) throws -> ServerProcess {
        try ServerProcess(arguments: [
            "--map", map.path, "--listen", "tcp://127.0.0.1:\(port)", "--reactors", "\(reactors)",
        ])
    }
}

/// The integer after `"key":` in a JSON text (flat scan, enough for the client's summary).
func jsonInteger(_ text: String, _ key: String) -> Int? {
    guard let r = text.firstRange(of: "\"\(key)\":") else { return nil }
    let digits = text[r.upperBound...].prefix { $0 == "-" || $0.isNumber }
    return Int(digits)
}

/// `commands=<n>` from the server's `asynccom-server stopped` log line.
func commandsLogged(_ stderr: String) -> Int? {
    guard let line = stderr.split(separator: "\n").last(where: { $0.hasSuffix("asynccom-server stopped") }),
          let r = line.firstRange(of: " commands=")
    else { return nil }
    return Int(line[r.upperBound...].prefix { $0.isNumber })
}

/// Polls the server's STATS until it has read at least `commands` commands.
func waitUntilRead(_ observer: LineClient, commands: UInt64) throws -> Bool {
    try eventually(within: 60) { try observer.stats()["commands"]! >= commands }
}

@Suite("Faults with real processes", .serialized, .machineSlot(timeLimit: .minutes(3)))
struct ProcessFaultTests {
    @Test("server SIGKILLed mid-job (100,000 commands of 1 s), restarted 2 s later: exact sum, exit 0",
          .machineSlot(timeLimit: .minutes(3), cpuBound: true), arguments: [(2, 2), (1, 3)])
    func killAndRestart(reactorsBefore: Int, reactorsAfter: Int) async throws {
        try await blocking {
            let job = try FaultJob(count: 100_000, wait: "1")
            defer { job.remove() }
            let first = try job.startServer(reactors: reactorsBefore)
            let port = try first.listeningPort()
            let observer = try LineClient(port: port)
            let client = try job.startClient(port: port)
            #expect(try waitUntilRead(observer, commands: 50_000))
            #expect(try observer.stats()["inflight_commands"]! > 0, "nothing in flight at the kill: not mid-job")
            first.signal(SIGKILL)
            #expect(try first.waitForExit(seconds: 10) == 128 + SIGKILL)
            usleep(2_000_000)
            let second = try job.startServer(port: port, reactors: reactorsAfter)
            #expect(try second.listeningPort() == port)

            let summary = try job.expectCompleted(client, within: 90)
            #expect(jsonInteger(summary, "reconnects")! >= 1)
            second.signal(SIGTERM)
            #expect(try second.waitForExit(seconds: 15) == 0)
        }
    }

    @Test("SIGTERM mid-job: every request the server read is answered before it exits; the client loses nothing")
    func sigtermDuringJob() async throws {
        try await blocking {
            // Waves of 20,000 commands every 0.5 s: the signal lands with one wave in flight and later ones unsent,
            // so the client gets the drained replies from the first server and sends the rest to the second.
            let job = try FaultJob(count: 100_000, wait: "0.5")
            defer { job.remove() }
            let first = try job.startServer(reactors: 2)
            let port = try first.listeningPort()
            var observer: LineClient? = try LineClient(port: port)
            let client = try job.startClient(port: port, window: 200)
            #expect(try waitUntilRead(observer!, commands: 30_000))
            first.signal(SIGTERM)
            observer = nil  // its connection would otherwise linger in the drain
            _ = observer
            #expect(try first.waitForExit(seconds: 20) == 0, "stderr: \(first.stderr())")
            let readByFirst = try #require(commandsLogged(first.stderr()), "\(first.stderr())")
            #expect(readByFirst >= 30_000)

            let second = try job.startServer(port: port, reactors: 2)
            #expect(try second.listeningPort() == port)
            try job.expectCompleted(client, within: 90)
            second.signal(SIGTERM)
            #expect(try second.waitForExit(seconds: 15) == 0)
            // Every command was read by exactly one server: had the first dropped any it had read, the client would
            // have sent it again and the second would have read it too.
            let readBySecond = try #require(commandsLogged(second.stderr()), "\(second.stderr())")
            #expect(readByFirst + readBySecond == job.count, "first read \(readByFirst), second \(readBySecond)")
        }
    }
}
