import AsyncComTestSupport
import Foundation
import Testing

/// Issue 11.6: small frictions of the command line.
@Suite(.machineSlot(timeLimit: .minutes(2))) struct FrictionTests {
    /// `asynccom-client data/seed/map.txt` (a map passed by mistake) printed 512 "invalid device address" lines
    /// and exited 0. Now: ten errors that say it is a map, one line for the rest, exit 2.
    @Test func aMapPassedAsCommandsIsCappedHintedAndExitsTwo() async throws {
        try await blocking {
            let server = try FakeServer(onLine: FakeServer.answering())
            defer { server.stop() }
            let map = dataPath("seed/map.txt")
            let r = try runExecutable("asynccom-client", ["--server", "tcp://127.0.0.1:\(server.port)", map])
            #expect(r.status == 2, "\(r.stderr)")
            let lines = r.stderr.split(separator: "\n").map(String.init)
            let errors = lines.filter { $0.hasPrefix("asynccom-client: \(map):") && $0.contains("found a device map line") }
            #expect(errors.count == 10)
            #expect(errors.first == "asynccom-client: \(map):1: expected ip:command, found a device map line "
                        + "(ip:command:response:wait): the map goes to asynccom-server --map")
            #expect(lines.contains("asynccom-client: \(map): 502 more malformed lines not shown"))
            #expect(lines.contains("asynccom-client: error: \(map): no well-formed command: all 512 lines are malformed"))
            #expect(r.stdout.contains("0 ok, 0 unknown, 0 failed, 512 malformed"))
        }
    }

    /// Some malformed lines among good ones: still exit 0 (they are reported and counted), capped the same way.
    @Test func someMalformedLinesAreCappedButNotFatal() async throws {
        try await blocking {
            let server = try FakeServer(onLine: FakeServer.answering())
            defer { server.stop() }
            let (good, _, _) = cannedCommands(20)
            let bad = (0..<15).map { "bad line \($0)" }
            let file = try TempFile((good + bad).joined(separator: "\n") + "\n")
            defer { file.remove() }
            let r = try runExecutable("asynccom-client", ["--server", "tcp://127.0.0.1:\(server.port)", file.path])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.split(separator: "\n").filter { $0.contains("expected ip:command: missing ':'") }.count == 10)
            #expect(r.stderr.contains("\(file.path): 5 more malformed lines not shown"))
            #expect(r.stdout.contains("20 ok, 0 unknown, 0 failed, 15 malformed"))
        }
    }

    /// `--format jsonl` without `--output` printed only the summary: the results now go to stdout (and the
    /// summary to stderr), as with `--output -`.
    @Test func formatWithoutOutputWritesResultsToStdout() async throws {
        try await blocking {
            let server = try FakeServer(onLine: FakeServer.answering())
            defer { server.stop() }
            let (lines, sum, _) = cannedCommands(30)
            let file = try TempFile(lines.joined(separator: "\n") + "\n")
            defer { file.remove() }
            let r = try runExecutable("asynccom-client", ["--server", "tcp://127.0.0.1:\(server.port)", "--format", "jsonl", file.path])
            #expect(r.status == 0, "\(r.stderr)")
            let objects = r.stdout.split(separator: "\n")
            #expect(objects.count == 30)
            #expect(objects.allSatisfy { $0.hasPrefix("{\"line\":") })
            #expect(r.stderr.contains("sum: \(sum)\n"))
        }
    }

    /// With stderr not a terminal, an unreachable server gave --connect-timeout (10 s) of silence: the first
    /// failed attempt is logged at once.
    @Test func theFirstFailedConnectAttemptIsLogged() async throws {
        try await blocking {
            let port = refusedPort()
            let file = try TempFile("10.0.0.1:foo\n")
            defer { file.remove() }
            let client = try ChildProcess("asynccom-client", ["--server", "tcp://127.0.0.1:\(port)", file.path])
            #expect(eventually(within: 5) { client.stderr.contains("cannot connect, retrying") })
            #expect(client.stderr.contains("error=Connection refused"))
            #expect(!client.hasExited)  // still within --connect-timeout
            client.signal(SIGKILL)
        }
    }

    /// A server that stops cleanly while the job waits for more input: nothing was in flight, so no warning
    /// (it said `warning ... connection lost in_flight=0`), and no "cannot connect" warning for a server that
    /// was up.
    @Test func aCleanServerStopWithNothingInFlightIsNoWarning() async throws {
        try await blocking {
            let server = try TestServer(mapFile: dataPath("seed/map.txt"))
            let client = try ChildProcess("asynccom-client", [
                "--server", "tcp://127.0.0.1:\(server.port)", "--json", "-"], input: .pipe)
            try client.writeInput("137.72.95.0:foo\n137.72.95.0:bar\n")
            let stats = try server.client()
            // Both commands received; the server's clean stop answers them before it closes.
            #expect(try eventually(within: 20) { try stats.stats()["commands"] == 2 })
            server.stop()
            client.closeInput()
            let r = try client.result(seconds: 30)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stderr.contains("warning") && !r.stderr.contains("error"), "\(r.stderr)")
            #expect(r.stdout.contains("\"ok\":2"))
        }
    }
}
