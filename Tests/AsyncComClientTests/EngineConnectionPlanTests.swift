@testable import AsyncComClient
import AsyncComCore
import AsyncComTestSupport
import Foundation
import Testing

/// One connection by default, one per server reactor once the server lags, against fake servers that say
/// which reactor serves each connection (a real server's SO_REUSEPORT hash is not under a test's control).
@Suite(.machineSlot(timeLimit: .minutes(2))) struct EngineConnectionPlanTests {
    /// A fake server with `reactors` reactors whose n-th connection lands on `landing(n)`; records which
    /// connections carried requests. It reads no more requests once it has one and fewer than `holdUntil`
    /// connections have said HELLO: the client's output then stays unwritten (the server lags; its 8 KiB receive
    /// buffer fills after the same bytes on any host), and a client that never opens the connections hangs into
    /// the suite's time limit.
    static func server(reactors: Int, holdUntil: Int, receiveBuffer: Int32? = 8 << 10,
                       landing: @escaping @Sendable (Int) -> Int) throws -> (FakeServer, Carried) {
        let carried = Carried()
        let server = try FakeServer(receiveBuffer: receiveBuffer) { c, line in
            if line.hasPrefix("HELLO") {
                c.send("HELLO 1 server=fake/0 max_items=1000 max_line=65536 max_inflight=100000 reactors=\(reactors) reactor=\(landing(c.number))\n")
                carried.hello()
            } else if let r = FakeServer.parseRequest(line) {
                carried.waitForHellos(holdUntil)
                carried.add(c.number)
                c.send(FakeServer.reply(to: r))
            }
        }
        return (server, carried)
    }

    final class Carried: @unchecked Sendable {
        private let lock = NSCondition()
        private var set: Set<Int> = []
        private var hellos = 0
        func add(_ n: Int) { lock.lock(); set.insert(n); lock.unlock() }
        func hello() { lock.lock(); hellos += 1; lock.broadcast(); lock.unlock() }
        func waitForHellos(_ n: Int) {
            lock.lock()
            while hellos < n { lock.wait() }
            lock.unlock()
        }
        var connections: Set<Int> { lock.lock(); defer { lock.unlock() }; return set }
    }

    @Test func aServerThatKeepsUpGetsOneConnection() async throws {
        // 2,000 commands (30 KB) fit the kernel's default receive buffer: the output never stays unwritten, however
        // late the fake server's thread gets the CPU.
        let (server, carried) = try Self.server(reactors: 2, holdUntil: 1, receiveBuffer: nil) { _ in 1 }
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(2000)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)]))
        let (summary, _) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 2000)
        let s = summary.servers[0]
        #expect(s.connections == 1 && s.reactors == 2 && s.reactorsCovered == 1 && !s.coverageFailed)
        #expect(server.connectionCount == 1 && carried.connections == [0])
    }

    @Test func aLaggingServerGetsEveryReactorCoveredAndDuplicatesAreClosed() async throws {
        // Connections 0 and 1 land on reactor 0, connection 2 on reactor 1. 50,000 commands (750 KB) are far more
        // than the socket buffers hold while the server reads nothing.
        let (server, carried) = try Self.server(reactors: 2, holdUntil: 3) { $0 < 2 ? 0 : 1 }
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(50_000)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)]))
        let (summary, _) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 50_000)
        let s = summary.servers[0]
        #expect(s.connections == 2 && s.reactors == 2 && s.reactorsCovered == 2 && !s.coverageFailed)
        // The retired duplicate (connection 1) carried nothing.
        #expect(!carried.connections.contains(1))
    }

    @Test func coverageThatCannotBeReachedIsBoundedAndReported() async throws {
        let attempts = 1 + ConnectionPlan.attemptsPerReactor * 2
        let (server, _) = try Self.server(reactors: 2, holdUntil: attempts) { _ in 0 }
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(50_000)
        let log = CapturedLog()
        let client = AsyncComClient(configuration: ClientConfiguration(servers: [tcp(server.port)]), logger: log.logger(level: .warning))
        let (summary, _) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 50_000)
        let s = summary.servers[0]
        #expect(s.coverageFailed && s.reactorsCovered == 1 && s.reactors == 2 && s.connections == 1)
        #expect(server.connectionCount <= attempts)
        // Logged once, also when the last attempt was a retired duplicate (found from outside: it never was).
        #expect(log.messages(at: .warning) == ["could not reach every server reactor"])
        #expect(summary.json().contains("\"coverage_failed\":true"))
    }

    @Test func aFixedConnectionCountIsKept() async throws {
        let (server, carried) = try Self.server(reactors: 4, holdUntil: 3) { $0 % 4 }
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(3000)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], window: 4, connectionsPerServer: 3))
        let (summary, _) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 3000)
        #expect(summary.servers[0].connections == 3 && !summary.servers[0].coverageFailed)
        #expect(carried.connections.count <= 3)
    }
}
