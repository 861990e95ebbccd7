import AsyncComClient
import AsyncComCore
import AsyncComTestSupport
import Foundation
import Testing

/// Counts across threads.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}

/// A value set once from another task.
private final class Box: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: String?
    func set(_ v: String) { lock.lock(); stored = v; lock.unlock() }
    var value: String? { lock.lock(); defer { lock.unlock() }; return stored }
}

/// A fake server that answers the requests whose arrival number (from 1) `answer` accepts, and never the others.
private func partlyAnsweringServer(answer: @escaping @Sendable (Int) -> Bool) throws -> FakeServer {
    let count = Counter()
    return try FakeServer { c, line in
        if line.hasPrefix("HELLO") {
            c.send(FakeServer.hello)
        } else if let r = FakeServer.parseRequest(line), answer(count.next()) {
            c.send(FakeServer.reply(to: r))
        }
    }
}

/// Issue 11.5: ending a job early, from the library and from the command line.
@Suite(.machineSlot(timeLimit: .minutes(2))) struct InterruptTests {
    /// `JobInterruption.interrupt()`: the job ends at once with the results it has (held-back ordered results
    /// included), `interrupted` set and the rest counted as not answered.
    @Test func interruptionEndsTheJobWithAPartialSummary() async throws {
        // Every second request is answered: with ordered delivery the answers wait behind gaps.
        let server = try partlyAnsweringServer { $0 % 2 == 0 && $0 <= 20 }
        defer { server.stop() }
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)], batch: 1, ordered: true))
        let interruption = JobInterruption()
        let results = ResultLog()
        let answers = AnswerLog()
        let (lines, _, _) = cannedCommands(100)
        let job = testTask {
            try await client.run(source: ArrayCommandSource(lines: lines), onResult: { results.append($0) },
                                 onAnswer: { answers.append($0) }, interruption: interruption)
        }
        let answered = try await blocking { eventually(within: 20) { answers.answers.count == 10 } } as Bool
        #expect(answered)
        interruption.interrupt()
        let summary = try await job.value
        #expect(summary.interrupted)
        #expect(summary.ok == 10 && summary.failed == 0)
        #expect(summary.notAnswered == 90)
        // Every answer reached onResult, in input order, although the gaps before them never filled.
        let sequences = results.results.map(\.sequence)
        #expect(sequences.count == 10)
        #expect(sequences == sequences.sorted())
        #expect(!summary.json().isEmpty && summary.json().contains("\"interrupted\":true,\"not_answered\":90"))
    }

    /// Issue 11.5: `for await r in client.results(...) { break }` then `await stream.summary()` hung forever on
    /// a 200,000-command job (the engine waited for a consumer that was gone). Leaving the loop cancels the job.
    @Test func breakingOutOfResultsCancelsTheJob() async throws {
        let server = try FakeServer(onLine: FakeServer.answering())
        defer { server.stop() }
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(server.port)]))
        let (lines, _, _) = cannedCommands(200_000)
        let stream = client.results(source: ArrayCommandSource(lines: lines))
        var seen = 0
        for await _ in stream {
            seen += 1
            break
        }
        #expect(seen == 1)
        // Awaited in a task of its own and polled, so that a hang fails the test instead of hanging it.
        let outcome = Box()
        _ = testTask {
            do {
                _ = try await stream.summary()
                outcome.set("a summary")
            } catch is CancellationError {
                outcome.set("cancelled")
            } catch {
                outcome.set("\(error)")
            }
        }
        let ended = try await blocking { eventually(within: 30) { outcome.value != nil } } as Bool
        #expect(ended, "summary() still waiting 30 s after the loop was left")
        #expect(outcome.value == "cancelled")
    }

    /// The CLI: the first SIGINT / SIGTERM stops the job, writes every result received to --output, prints the
    /// partial summary marked interrupted and exits 130 / 143.
    @Test(arguments: [SIGINT, SIGTERM]) func firstSignalEndsWithAPartialSummary(signal: Int32) async throws {
        try await blocking {
            let server = try partlyAnsweringServer { $0 <= 10 }
            defer { server.stop() }
            let dir = try tempDirectory()
            defer { removeTempDirectory(dir) }
            let (lines, _, _) = cannedCommands(100)
            let path = dir + "/commands.txt"
            try writeFile(path, lines.joined(separator: "\n") + "\n")
            let out = dir + "/out.txt"
            let client = try ChildProcess("asynccom-client", [
                "--server", "tcp://127.0.0.1:\(server.port)", "--batch", "1", "--output", out, "--json", path])
            #expect(eventually(within: 20) { catchesSignal(client.pid, signal) })
            // Every request sent: the first ten are answered, the others never will be.
            #expect(eventually(within: 20) { server.lines.filter { $0.hasPrefix("REQ ") }.count == 100 })
            client.signal(signal)
            let r = try client.result(seconds: 20)
            #expect(r.status == 128 + signal, "\(r.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            #expect(json["interrupted"] as? Bool == true)
            let ok = try #require(json["ok"] as? Int)
            #expect(ok <= 10)
            #expect(json["not_answered"] as? Int == 100 - ok)
            // The output holds every result received, in input order.
            let written = try readText(out).split(separator: "\n").map(String.init)
            #expect(written.count == ok)
            for (i, line) in written.enumerated() { #expect(line == "\(lines[i]) \(FakeServer.value(of: lines[i]))") }
            #expect(r.stderr.contains("stopping"))
        }
    }

    /// The second signal exits at once, even when the first could not end anything yet (here `--strict` is
    /// still reading a standard input that never ends).
    @Test func secondSignalExitsAtOnce() async throws {
        try await blocking {
            let client = try ChildProcess("asynccom-client", ["--server", "tcp://127.0.0.1:1", "--strict", "-"], input: .pipe)
            try client.writeInput("10.0.0.1:foo\n")
            #expect(eventually(within: 20) { catchesSignal(client.pid, SIGINT) })
            client.signal(SIGINT)
            #expect(eventually(within: 20) { client.stderr.contains("stopping") })
            #expect(!client.hasExited)
            client.signal(SIGINT)
            #expect(try client.wait(seconds: 10) == 130)
        }
    }
}
