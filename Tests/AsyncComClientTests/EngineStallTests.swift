import AsyncComClient
import AsyncComCore
import AsyncComTestSupport
import Foundation
import Testing

/// Servers that stall (stop reading, or read and never answer) against the real engine: every accepted command
/// has a deadline, a stalled server's work fails over or fails at once, and the time to fail does not grow with
/// the job (issue 11, points 1-3). The wall-clock bound is checked in virtual time in `ServerHealthTests` (a
/// loaded machine makes any wall-clock bound here a guess); here, what makes it hold: how many stalls it takes,
/// whatever the job's size. Before the fix the first two tests never ended (the suite's time limit).
@Suite(.machineSlot(timeLimit: .minutes(2))) struct EngineStallTests {
    /// A fake server that answers HELLO and the first `answered` requests, then `mode`s.
    enum Mode { case stopReading, blackHole }

    final class Gate: @unchecked Sendable {
        let semaphore = DispatchSemaphore(value: 0)
        let lock = NSLock()
        var requests = 0
        func next() -> Int { lock.lock(); defer { lock.unlock() }; requests += 1; return requests }
    }

    static func stallingServer(answered: Int, mode: Mode) throws -> (FakeServer, Gate) {
        let gate = Gate()
        let server = try FakeServer { c, line in
            if line.hasPrefix("HELLO") {
                c.send(FakeServer.hello)
            } else if let r = FakeServer.parseRequest(line) {
                if gate.next() <= answered {
                    c.send(FakeServer.reply(to: r))
                } else if mode == .stopReading {
                    // This connection's thread stops reading: the kernel buffers fill, the client's writes stop.
                    gate.semaphore.wait()
                }
            }
        }
        return (server, gate)
    }

    /// `n` commands as a commands file in memory (devices 10.x.y.z, foo/bar alternately).
    /// Byte by byte, not by string interpolation: a million lines in a fraction of a second even in a debug
    /// build, so the async tests need not leave the cooperative pool (nor take a `blocking {}` slot) for it.
    static func commandBytes(_ n: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(n * 20)
        func decimal(_ v: Int) {
            if v >= 100 { bytes.append(UInt8(48 + v / 100)) }
            if v >= 10 { bytes.append(UInt8(48 + (v / 10) % 10)) }
            bytes.append(UInt8(48 + v % 10))
        }
        for i in 0..<n {
            bytes.append(contentsOf: [49, 48, 46])  // "10."
            decimal(i / 62_500)
            bytes.append(46)
            decimal((i / 250) % 250)
            bytes.append(46)
            decimal(i % 250 + 1)
            bytes.append(contentsOf: i % 2 == 0 ? [58, 102, 111, 111, 10] : [58, 98, 97, 114, 10])  // ":foo\n" / ":bar\n"
        }
        return bytes
    }

    static func commands(_ n: Int) -> MemoryCommandSource {
        MemoryCommandSource(bytes: commandBytes(n), name: "stall-test")
    }

    @Test(.machineSlot(timeLimit: .minutes(2), cpuBound: true), arguments: [20_000, 1_000_000])
    func theCLIExitsOneWhenItsServerStopsReading(commands n: Int) async throws {
        let (server, gate) = try Self.stallingServer(answered: 3, mode: .stopReading)
        defer {
            server.stop()
            for _ in 0..<64 { gate.semaphore.signal() }
        }
        let dir = try tempDirectory()
        defer { removeTempDirectory(dir) }
        let path = dir + "/commands.txt"
        try writeFile(path, bytes: Self.commandBytes(n))
        // Before the fix the client never exited (killed after 100 s, which throws).
        let r = try await blocking {
            try runExecutable("asynccom-client", [
                "--server", "tcp://127.0.0.1:\(server.port)", "--timeout", "0.5", "--retries", "1", "--json", "--quiet", path],
                seconds: 100)
        }
        #expect(r.status == 1, "\(r.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
        let json = try #require(object as? [String: Any])
        #expect(json["ok"] as? Int == 3 * 16)
        #expect(json["failed"] as? Int == n - 3 * 16)
        let servers = try #require(json["servers"] as? [[String: Any]])
        #expect((servers.first?["stalls"] as? Int ?? 99) <= 2)
    }

    @Test(.machineSlot(timeLimit: .minutes(2), cpuBound: true), arguments: [20_000, 1_000_000])
    func serverThatStopsReadingEndsTheJobWithinTheBound(commands n: Int) async throws {
        let (server, gate) = try Self.stallingServer(answered: 3, mode: .stopReading)
        defer {
            server.stop()
            for _ in 0..<64 { gate.semaphore.signal() }
        }
        let (timeout, retries, connectTimeout) = (0.5, 1, 10.0)
        let client = AsyncComClient.quiet(ClientConfiguration(
            servers: [tcp(server.port)], batch: 16, requestTimeout: timeout, retries: retries, connectTimeout: connectTimeout))
        let source = Self.commands(n)
        let summary = try await client.run(source: source, onResult: nil)
        #expect(summary.ok + summary.unknown + summary.failed == n)
        #expect(summary.ok == 3 * 16)
        #expect(summary.failed == n - 3 * 16)
        // The server is given up after retries + 1 stalls (one per connection attempt that got to send), not
        // once per group of requests pulled: the same for 20,000 commands as for 1,000,000.
        #expect(summary.servers[0].stalls <= retries + 1)
        #expect(summary.firstFailure?.contains("stalled") == true, "\(summary.firstFailure ?? "")")
    }

    @Test func serverThatReadsButNeverAnswersFailsEverythingAtOnce() async throws {
        // Through a black hole, with no retries: one timeout, not one per group of requests.
        let (server, gate) = try Self.stallingServer(answered: 0, mode: .blackHole)
        defer {
            server.stop()
            gate.semaphore.signal()
        }
        let client = AsyncComClient.quiet(ClientConfiguration(
            servers: [tcp(server.port)], batch: 16, window: 256, requestTimeout: 0.5, retries: 0))
        let source = Self.commands(100_000)
        let summary = try await client.run(source: source, onResult: nil)
        #expect(summary.failed == 100_000)
        // One stall ends it all (before the fix: a timeout per group of requests pulled, 24 s for 100,000).
        #expect(summary.servers[0].stalls == 1)
    }

    @Test func stalledServersWorkFailsOverToTheHealthyOne() async throws {
        let healthy = try FakeServer(onLine: FakeServer.answering())
        let (stalled, gate) = try Self.stallingServer(answered: 5, mode: .stopReading)
        defer {
            healthy.stop()
            stalled.stop()
            for _ in 0..<64 { gate.semaphore.signal() }
        }
        let (lines, sum, _) = cannedCommands(20_000)
        // 2 s: the healthy server must not look stalled to a client starved of CPU by a loaded machine.
        let client = AsyncComClient.quiet(ClientConfiguration(
            servers: [tcp(healthy.port), tcp(stalled.port)], batch: 16, requestTimeout: 2, retries: 3, connectTimeout: 600))
        let (summary, results) = try await client.runCollecting(lines)
        #expect(summary.failed == 0 && summary.ok == 20_000 && summary.sum == sum)
        #expect(results.count == 20_000)
        // Failover happened at the stall: with a connect timeout of 600 s and 3 retries nothing else would
        // have moved the stalled server's work before the suite's time limit.
        #expect(summary.servers[1].timeouts > 0 && summary.servers[1].stalls >= 1)
    }
}
