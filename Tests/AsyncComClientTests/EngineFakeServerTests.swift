import AsyncComClient
import AsyncComCore
import AsyncComTestSupport
import Foundation
import Synchronization
import Testing

/// The engine against scripted fake servers: the protocol behaviour and every fault path.
@Suite(.machineSlot(timeLimit: .minutes(2))) struct EngineFakeServerTests {
    @Test func answersEveryCommandInInputOrder() async throws {
        let server = try FakeServer(onLine: FakeServer.answering(delay: { id in Double(id % 3) * 0.02 }))
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(1000)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 7, window: 4, ordered: true))
        let (summary, results) = try await client.runCollecting(lines)
        #expect(summary.sum == sum)
        #expect(summary.ok == 1000 && summary.unknown == 0 && summary.failed == 0)
        #expect(results.map(\.sequence) == Array(0..<1000))
        for r in results {
            #expect(r.entry.item == lines[r.sequence])
            #expect(r.outcome == .value(Int64(FakeServer.value(of: r.entry.item))!))
        }
        #expect(summary.requests == (1000 + 6) / 7)
    }

    @Test func orderedDeliveryBoundsHowFarItReadsAhead() async throws {
        // The first request is held, every other one is answered at once: in input order nothing can be
        // delivered before it, so pulling must stop at the span limit (max(4 x capacity, 1024) commands). The
        // held reply goes out once the requests have stopped coming (no fixed sleep).
        let probe = ReadAhead()
        let held = Mutex<(FakeServer.Connection, String)?>(nil)
        let server = try FakeServer { c, line in
            if line.hasPrefix("HELLO") {
                c.send(FakeServer.hello)
            } else if let r = FakeServer.parseRequest(line) {
                if r.id == "1" {
                    held.withLock { $0 = (c, FakeServer.reply(to: r)) }
                } else {
                    probe.count()
                    c.send(FakeServer.reply(to: r))
                }
            }
        }
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(6000)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 1, window: 4, ordered: true))
        let job = testTask { try await client.runCollecting(lines) }
        // Before the held reply: at most the span (1024) commands were read, so at most that many requests sent.
        let before = try await blocking { () -> Int? in
            // It reads ahead nearly to the span (so a slow start cannot pass for a stop), then stops.
            #expect(eventually(within: 60) { held.withLock { $0 != nil } && probe.answered >= 1000 })
            return settledValue { probe.answered }
        }
        let (c, reply) = try #require(held.withLock { $0 })
        c.send(reply)
        let (summary, results) = try await job.value
        #expect(summary.sum == sum && summary.ok == 6000)
        #expect(results.map(\.sequence) == Array(0..<6000))
        let requests = try #require(before, "the client kept sending while the first reply was held")
        #expect(requests > 0 && requests <= 1024, "\(requests) requests answered while the first was held")
    }

    @Test func outOfOrderRepliesAreMatchedById() async throws {
        // Later requests are answered first: delays shrink as ids grow.
        let server = try FakeServer(onLine: FakeServer.answering(delay: { id in max(0, 0.3 - Double(id) * 0.01) }))
        defer { server.stop() }
        let (lines, sum, unknown) = cannedCommands(400, unknownEvery: 9)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 4, window: 64))
        let (summary, results) = try await client.runCollecting(lines)
        #expect(summary.sum == sum)
        #expect(summary.unknown == unknown && summary.ok == 400 - unknown)
        #expect(results.count == 400)
        #expect(Set(results.map(\.sequence)).count == 400)
        // Completion order is not input order...
        #expect(results.map(\.sequence) != Array(0..<400))
        // ...but every command got its own answer.
        for r in results {
            let expected = FakeServer.value(of: r.entry.item)
            #expect(r.outcome == (expected == "?" ? .unknown : .value(Int64(expected)!)))
        }
    }

    @Test func batchAndWindowFollowTheHelloLimits() async throws {
        let tracker = InFlightTracker()
        let hello = "HELLO 1 server=fake/0 max_items=3 max_line=4096 max_inflight=6 reactors=1 reactor=0\n"
        let answering = FakeServer.answering(hello: hello)
        let server = try FakeServer { c, line in
            if let r = FakeServer.parseRequest(line) {
                tracker.sent(items: r.items.count)
                DispatchQueue.global().asyncAfter(deadline: .now() + 0.01) {
                    tracker.answered()
                    c.send(FakeServer.reply(to: r))
                }
            } else {
                answering(c, line)
            }
        }
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(100)
        // One connection: the limits are per connection (more would be opened for the budget otherwise).
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 16, window: 256, connectionsPerServer: 1))
        let (summary, _) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 100)
        #expect(tracker.maxItems == 3)
        // window = max_inflight / batch = 2 requests in flight at most.
        #expect(tracker.maxInFlight <= 2)
    }

    @Test func silentServerFailsAfterTimeoutAndRetries() async throws {
        let server = try FakeServer { c, line in
            if line.hasPrefix("HELLO") { c.send(FakeServer.hello) }
        }
        defer { server.stop() }
        let (lines, _, _) = cannedCommands(20)
        let client = AsyncComClient.quiet(ClientConfiguration(
            servers: [tcp(server.port)], batch: 5, window: 8, requestTimeout: 0.3, retries: 1))
        let start = Date()
        let (summary, results) = try await client.runCollecting(lines)
        #expect(Date().timeIntervalSince(start) < 30)
        #expect(summary.failed == 20 && summary.ok == 0 && summary.sum == 0)
        #expect(summary.retries == 4)
        #expect(results.count == 20)
        #expect(results.allSatisfy {
            if case .failed(let reason) = $0.outcome { return reason.hasPrefix("timeout after 2 attempts") }
            return false
        })
        // Each request was sent twice, with the same id.
        let requestLines = server.lines.filter { $0.hasPrefix("REQ") }
        #expect(requestLines.count == 8)
        #expect(Set(requestLines).count == 4)
    }

    @Test func garbageServerFailsWithoutHanging() async throws {
        let server = try FakeServer { c, _ in c.send("garbage \u{1}\u{2} 17\n") }
        defer { server.stop() }
        let (lines, _, _) = cannedCommands(10)
        let client = AsyncComClient.quiet(ClientConfiguration(
            servers: [tcp(server.port)], requestTimeout: 0.3, retries: 1, connectTimeout: 60))
        let start = Date()
        let (summary, results) = try await client.runCollecting(lines)
        #expect(Date().timeIntervalSince(start) < 30)
        #expect(summary.failed == 10)
        // Each HELLO gets garbage, but under load (sanitizers) a later attempt can time out on its HELLO before
        // the fake server's garbage arrives: at least the first is counted.
        #expect(summary.badReplies >= 1)
        #expect(results.allSatisfy {
            if case .failed(let reason) = $0.outcome { return reason.hasPrefix("server unreachable (tcp://127.0.0.1:\(server.port): ") }
            return false
        })
    }

    @Test func garbageRepliesToRequestsAreIgnoredAndRetried() async throws {
        // HELLO is fine; the first send of every request gets a garbage line, the re-send a proper reply.
        let seen = SeenIDs()
        let server = try FakeServer { c, line in
            if line.hasPrefix("HELLO") {
                c.send(FakeServer.hello)
            } else if let r = FakeServer.parseRequest(line) {
                if seen.firstTime(r.id) {
                    c.send("RES \(r.id) not-a-number\n")
                } else {
                    c.send(FakeServer.reply(to: r))
                }
            }
        }
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(30)
        // 1 s before a re-send: a re-sent request must not time out again under a sanitizer's slowdown.
        let client = AsyncComClient.quiet(ClientConfiguration(
            servers: [tcp(server.port)], batch: 10, requestTimeout: 1, retries: 2))
        let (summary, _) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 30 && summary.failed == 0)
        #expect(summary.badReplies == 3 && summary.retries == 3)
    }

    @Test func droppedConnectionIsReconnectedAndRequestsResent() async throws {
        let answering = FakeServer.answering(delay: { _ in 0.05 })
        let server = try FakeServer { c, line in
            // The first connection dies after its fifth request, unanswered.
            if c.number == 0, line.hasPrefix("REQ"), FakeServer.parseRequest(line).map({ UInt64($0.id)! >= 5 }) == true {
                c.close()
                return
            }
            if c.number == 0, line.hasPrefix("REQ") { return }  // never answered either
            answering(c, line)
        }
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(500)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 10, window: 8))
        let (summary, results) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 500 && summary.failed == 0)
        #expect(summary.resends >= 5)
        #expect(summary.reconnects >= 1)
        #expect(summary.servers[0].connectionsLost >= 1)
        #expect(Set(results.map(\.sequence)).count == 500)
    }

    @Test func duplicateRepliesAreCountedOnce() async throws {
        let server = try FakeServer { c, line in
            if line.hasPrefix("HELLO") {
                c.send(FakeServer.hello)
            } else if let r = FakeServer.parseRequest(line) {
                c.send(FakeServer.reply(to: r) + FakeServer.reply(to: r))
            }
        }
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(64)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 8))
        let (summary, results) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 64)
        #expect(results.count == 64)
        #expect(summary.lateReplies == 8)
    }

    @Test func requestErrorsFailTheirCommandsOnly() async throws {
        let server = try FakeServer { c, line in
            if line.hasPrefix("HELLO") {
                c.send(FakeServer.hello)
            } else if let r = FakeServer.parseRequest(line) {
                if r.items.contains(where: { $0.hasPrefix("10.0.0.3:") }) {
                    c.send("ERR \(r.id) BAD_ITEM item 1: no such thing\n")
                } else {
                    c.send(FakeServer.reply(to: r))
                }
            }
        }
        defer { server.stop() }
        let lines = ["10.0.0.1:foo", "10.0.0.2:foo", "10.0.0.3:foo", "10.0.0.4:foo"]
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 1))
        let (summary, results) = try await client.runCollecting(lines)
        #expect(summary.ok == 3 && summary.failed == 1 && summary.sum == 7)
        let failed = results.first { $0.entry.item == "10.0.0.3:foo" }
        #expect(failed?.outcome == .failed(reason: "BAD_ITEM item 1: no such thing"))
        #expect(summary.retries == 0)
    }

    @Test func serverStartingLateIsWaitedFor() async throws {
        let port = unusedPort()
        let (lines, sum, _) = cannedCommands(50)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(port)], connectTimeout: 30))
        let starter = testTask {
            try await Task.sleep(for: .seconds(1))
            return try FakeServer(port: port, onLine: FakeServer.answering())
        }
        let (summary, _) = try await client.runCollecting(lines)
        let server = try await starter.value
        server.stop()
        #expect(summary.sum == sum && summary.ok == 50 && summary.failed == 0)
        #expect(summary.elapsedSeconds >= 0.9)
    }

    @Test func unreachableServerFailsAfterConnectTimeout() async throws {
        let port = refusedPort()
        let (lines, _, _) = cannedCommands(30)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(port)], connectTimeout: 0.5))
        let (summary, results) = try await client.runCollecting(lines)
        #expect(summary.failed == 30)
        #expect(summary.elapsedSeconds >= 0.45 && summary.elapsedSeconds < 20)
        let expected = "server unreachable (tcp://127.0.0.1:\(port): Connection refused)"
        #expect(results.allSatisfy { $0.outcome == .failed(reason: expected) })
        #expect(summary.firstFailure == expected)
    }

    @Test func commandsFailOverToTheServerThatIsUp() async throws {
        let live = try FakeServer(onLine: FakeServer.answering())
        defer { live.stop() }
        let dead = refusedPort()
        let (lines, sum, _) = cannedCommands(600)
        let client = AsyncComClient.quiet(ClientConfiguration(
            servers: [tcp(dead), tcp(live.port)], batch: 8, connectTimeout: 0.5))
        let (summary, results) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 600 && summary.failed == 0)
        #expect(summary.servers[0].ok == 0 && !summary.servers[0].upAtEnd)
        #expect(summary.servers[1].ok == 600 && summary.servers[1].upAtEnd)
        #expect(results.allSatisfy { $0.server == tcp(live.port) })
    }

    @Test func devicesAreShardedOverServers() async throws {
        let a = try FakeServer(onLine: FakeServer.answering())
        let b = try FakeServer(onLine: FakeServer.answering())
        defer { a.stop(); b.stop() }
        let (lines, sum, _) = cannedCommands(1000)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(a.port), tcp(b.port)], batch: 16))
        let (summary, results) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 1000)
        #expect(summary.servers[0].ok > 100 && summary.servers[1].ok > 100)
        // One device, one server.
        var serverOfDevice: [DeviceAddress: Endpoint] = [:]
        for r in results {
            if let s = serverOfDevice[r.entry.device] { #expect(s == r.server) }
            serverOfDevice[r.entry.device] = r.server
        }
    }

    @Test func resultStreamDeliversEverythingThenTheSummary() async throws {
        let server = try FakeServer(onLine: FakeServer.answering())
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(3000)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 16, ordered: true))
        let stream = client.results(source: ArrayCommandSource(lines: lines))
        var next = 0
        var total: Int128 = 0
        for await r in stream {
            #expect(r.sequence == next)
            next += 1
            if case .value(let v) = r.outcome { total += Int128(v) }
        }
        let summary = try await stream.summary()
        #expect(next == 3000 && total == sum && summary.sum == sum)
    }

    @Test func resultStreamPausesWhileTheConsumerLags() async throws {
        let probe = ReadAhead()
        let answering = FakeServer.answering()
        let server = try FakeServer { c, line in
            if line.hasPrefix("REQ") { probe.count() }
            answering(c, line)
        }
        defer { server.stop() }
        let (lines, sum, _) = cannedCommands(150_000)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 16, window: 16))
        let stream = client.results(source: ArrayCommandSource(lines: lines))
        // Nobody reads until the requests stop: the engine must stop at about 64k undelivered results (+ what
        // was in flight).
        let whileIdle = try await blocking { () -> Int? in
            // At least 64Ki results (4,096 requests of 16) are buffered before it may stop.
            #expect(eventually(within: 60) { probe.answered >= 4000 })
            return settledValue { probe.answered }
        }
        var total: Int128 = 0
        var count = 0
        for await r in stream {
            count += 1
            if case .value(let v) = r.outcome { total += Int128(v) }
        }
        #expect(count == 150_000 && total == sum, "count \(count)")
        do {
            let summary = try await stream.summary()
            #expect(summary.sum == sum, "\(summary.ok) \(summary.failed) \(summary.firstFailure ?? "")")
        } catch {
            Issue.record("summary threw \(error)")
        }
        let requestsWhileIdle = try #require(whileIdle, "the client kept sending while nobody read its results")
        #expect(requestsWhileIdle <= (65_536 + 2 * 16 * 16) / 16 + 1, "\(requestsWhileIdle) requests while the consumer slept")
    }

    @Test func cancellationStopsTheJob() async throws {
        let server = try FakeServer { c, line in
            if line.hasPrefix("HELLO") { c.send(FakeServer.hello) }
        }
        defer { server.stop() }
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], requestTimeout: 600))
        let job = testTask { try await client.run(source: ArrayCommandSource(lines: cannedCommands(100).lines)) }
        // Cancelled mid-job: its requests are out and will never be answered.
        let sent = try await blocking { eventually { server.lines.contains { $0.hasPrefix("REQ") } } } as Bool
        #expect(sent)
        job.cancel()
        await #expect(throws: CancellationError.self) { try await job.value }
    }

    @Test func sourceErrorsEndTheJob() async throws {
        struct Broken: CommandSource {
            var n = 0
            mutating func next() throws -> CommandEntry? {
                n += 1
                if n > 3 { throw InputFileError(file: "broken", line: n, message: "read error") }
                return CommandEntry(device: DeviceAddress(ipv4: 0x0A00_0001), item: "10.0.0.1:foo", commandStart: 9, line: n)
            }
        }
        let server = try FakeServer(onLine: FakeServer.answering())
        defer { server.stop() }
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)]))
        await #expect {
            try await client.run(source: Broken())
        } throws: { error in
            guard case ClientError.source(let inner) = error else { return false }
            return "\(inner)" == "broken:4: read error"
        }
    }

    @Test func emptySourceAndPartialBatch() async throws {
        let server = try FakeServer(onLine: FakeServer.answering())
        defer { server.stop() }
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 16))
        let empty = try await client.run(source: ArrayCommandSource(lines: ["# nothing", ""]))
        #expect(empty.total == 0 && empty.sum == 0)
        let (summary, _) = try await client.runCollecting(["10.0.0.1:foo", "10.0.0.2:foo", "bad", "10.0.0.3:foo"])
        #expect(summary.sum == 6 && summary.requests == 1 && summary.malformed == 1)
    }
}

final class InFlightTracker: @unchecked Sendable {
    private let lock = NSLock()
    private var inFlight = 0
    private(set) var maxInFlight = 0
    private(set) var maxItems = 0

    func sent(items: Int) {
        lock.lock()
        inFlight += 1
        maxInFlight = max(maxInFlight, inFlight)
        maxItems = max(maxItems, items)
        lock.unlock()
    }

    func answered() {
        lock.lock()
        inFlight -= 1
        lock.unlock()
    }
}

final class SeenIDs: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: Set<String> = []

    func firstTime(_ id: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return seen.insert(id).inserted
    }
}

/// Counts requests the fake server answered (from its connection threads).
final class ReadAhead: Sendable {
    private let requests = Atomic<Int>(0)

    func count() { requests.add(1, ordering: .relaxed) }

    var answered: Int { requests.load(ordering: .relaxed) }
}
