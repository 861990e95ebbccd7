import AsyncComEventLoop
import AsyncComTestSupport
import Foundation
import Testing

/// The `asynccom-client` binary, against scripted fake servers in this process.
@Suite(.machineSlot(timeLimit: .minutes(3))) struct CLITests {
    let client = "asynccom-client"

    func commandsFile(_ lines: [String]) throws -> (dir: String, path: String) {
        let dir = try tempDirectory()
        let path = dir + "/commands.txt"
        try writeFile(path, lines.joined(separator: "\n") + "\n")
        return (dir, path)
    }

    func jsonObject(_ text: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any])
    }

    @Test func aClientOnOneCPUEndsWhenItsJobDoes() async throws {
        // Found from outside: the signal pipe's reader held Dispatch's only worker in a one-CPU process, and every
        // job ended a second late (a 2 ms job took 1.01 s under `taskset -c 1`).
        try await blocking {
            let server = try FakeServer(onLine: FakeServer.answering())
            defer { server.stop() }
            let (dir, path) = try commandsFile(["10.0.0.1:foo", "10.0.0.2:bar"])
            defer { removeTempDirectory(dir) }
            // After the fake server started its threads: the client inherits this dedicated thread's CPU mask.
            let cpus = EventLoop.threadCPUs()
            try #require(!cpus.isEmpty)
            try #require(EventLoop.pinThread(toCPU: cpus[0]) == nil)
            var fastest = Double.infinity
            for _ in 0..<2 {
                let start = EventLoop.monotonicNanos()
                let r = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(server.port)", path])
                #expect(r.status == 0, "\(r.stderr)")
                fastest = min(fastest, Double(EventLoop.monotonicNanos() - start) / 1e9)
            }
            // With the bug every run took over a second; without it a few tens of milliseconds.
            #expect(fastest < 0.5, "fastest of two runs: \(fastest) s")
        }
    }

    @Test func textOutputIsInInputOrder() async throws {
        try await blocking {
            let server = try FakeServer(onLine: FakeServer.answering(delay: { id in max(0, 0.2 - Double(id) * 0.01) }))
            defer { server.stop() }
            let (lines, sum, unknown) = cannedCommands(300, unknownEvery: 7)
            let (dir, path) = try commandsFile(lines)
            defer { removeTempDirectory(dir) }
            let out = dir + "/results.txt"
            let r = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(server.port)", "--batch", "4", "--output", out, path])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("sum: \(sum)\n"))
            #expect(r.stdout.contains("commands: \(300 - unknown) ok, \(unknown) unknown, 0 failed, 0 malformed\n"))
            #expect(r.stdout.contains("latency: p50 "))
            let written = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init)
            #expect(written.count == 300)
            for (i, line) in written.enumerated() {
                let value = FakeServer.value(of: lines[i])
                #expect(line == "\(lines[i]) \(value == "?" ? "unknown" : value)")
            }
        }
    }

    @Test func jsonlOutputOnStdoutWithSummaryOnStderr() async throws {
        try await blocking {
            let server = try FakeServer(onLine: FakeServer.answering())
            defer { server.stop() }
            let lines = ["10.0.0.1:foo", "bad line", "10.0.0.2:bar", "10.0.0.3:zap"]
            let (dir, path) = try commandsFile(lines)
            defer { removeTempDirectory(dir) }
            let r = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(server.port)", "--output", "-", "--format", "jsonl", path])
            #expect(r.status == 0, "\(r.stderr)")
            let objects = try r.stdout.split(separator: "\n").map { try jsonObject(String($0)) }
            #expect(objects.count == 3)
            let byLine = Dictionary(uniqueKeysWithValues: objects.map { ($0["line"] as! Int, $0) })
            #expect(byLine[1]?["device"] as? String == "10.0.0.1")
            #expect(byLine[1]?["command"] as? String == "foo")
            #expect(byLine[1]?["status"] as? String == "ok")
            #expect(byLine[1]?["value"] as? Int == 1)
            #expect(byLine[3]?["value"] as? Int == 2000)
            #expect(byLine[4]?["status"] as? String == "unknown")
            #expect(byLine[4]?["value"] == nil)
            #expect(objects.allSatisfy { $0["latency_ms"] is Double || $0["latency_ms"] is Int })
            // The summary and the malformed line go to stderr when results use stdout.
            #expect(r.stderr.contains("asynccom-client: \(path):2: "))
            #expect(r.stderr.contains("sum: 2001\n"))
            #expect(r.stderr.contains("1 malformed"))
        }
    }

    @Test func jsonSummaryKeys() async throws {
        try await blocking {
            let server = try FakeServer(onLine: FakeServer.answering())
            defer { server.stop() }
            let (lines, sum, unknown) = cannedCommands(100, unknownEvery: 10)
            let (dir, path) = try commandsFile(lines + ["garbage"])
            defer { removeTempDirectory(dir) }
            let r = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(server.port)", "--json", path])
            #expect(r.status == 0, "\(r.stderr)")
            let trimmed = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!trimmed.contains("\n"))
            let json = try jsonObject(trimmed)
            for key in ["sum", "ok", "unknown", "failed", "malformed", "elapsed_s", "commands_per_s", "latency_ms", "servers"] {
                #expect(json[key] != nil, "missing \(key)")
            }
            #expect(json["sum"] as? Int == Int(sum))
            #expect(json["ok"] as? Int == 100 - unknown)
            #expect(json["unknown"] as? Int == unknown)
            #expect(json["failed"] as? Int == 0)
            #expect(json["malformed"] as? Int == 1)
            let latency = try #require(json["latency_ms"] as? [String: Any])
            for key in ["p50", "p90", "p99", "max"] { #expect(latency[key] != nil) }
        }
    }

    @Test func standardInput() async throws {
        try await blocking {
            let server = try FakeServer(onLine: FakeServer.answering())
            defer { server.stop() }
            let (lines, sum, _) = cannedCommands(50)
            let r = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(server.port)", "--json", "-"],
                                   stdin: lines.joined(separator: "\n") + "\n")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try jsonObject(r.stdout)["sum"] as? Int == Int(sum))
            // --strict on stdin reads it into memory first, then sends.
            let s = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(server.port)", "--strict", "--json", "-"],
                                   stdin: lines.joined(separator: "\n"))
            #expect(s.status == 0, "\(s.stderr)")
            #expect(try jsonObject(s.stdout)["ok"] as? Int == 50)
        }
    }

    @Test func strictRefusesABadFileBeforeSending() async throws {
        try await blocking {
            let server = try FakeServer(onLine: FakeServer.answering())
            defer { server.stop() }
            let (dir, path) = try commandsFile(["10.0.0.1:foo", "10.0.0.2:foo", "10.0.0.300:foo", "10.0.0.4:foo"])
            defer { removeTempDirectory(dir) }
            let r = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(server.port)", "--strict", path])
            #expect(r.status == 2)
            #expect(r.stderr.contains("asynccom-client: error: \(path):3: "))
            #expect(r.stdout.isEmpty)
            #expect(server.lines.filter { $0.hasPrefix("REQ") }.isEmpty)
            let s = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(server.port)", "--strict", "-"], stdin: "1.2.3.4:foo\nnope\n")
            #expect(s.status == 2)
            #expect(s.stderr.contains("<stdin>:2: "))
        }
    }

    @Test func usageErrorsExit64AndInputErrorsExitTwo() async throws {
        try await blocking {
            let dir = try tempDirectory()
            defer { removeTempDirectory(dir) }
            for args in [[dir + "/missing.txt"], [dir]] {
                let r = try runExecutable(client, args)
                #expect(r.status == 2, "\(args): \(r.status) \(r.stderr)")
                #expect(r.stderr.hasPrefix("asynccom-client: error: "), "\(args): \(r.stderr)")
            }
            for args in [["--batch", "0", "x"], ["--server", "http://x:1", "x"], ["--bogus", "x"], [],
                         ["--format", "xml", "x"], ["--timeout", "-1", "x"]] {
                let r = try runExecutable(client, args)
                #expect(r.status == 64, "\(args): \(r.status) \(r.stderr)")
                #expect(r.stderr.hasPrefix("asynccom-client: error: "), "\(args): \(r.stderr)")
            }
            let help = try runExecutable(client, ["--help"])
            #expect(help.status == 0)
            for option in ["--server", "--batch", "--window", "--connections", "--timeout", "--retries", "--connect-timeout",
                           "--output", "--format", "--json", "--strict", "--quiet", "--log-level", "default"] {
                #expect(help.stdout.contains(option), "help lacks \(option)")
            }
        }
    }

    @Test func silentServerExitsOneAfterTimeoutAndRetries() async throws {
        try await blocking {
            let server = try FakeServer { c, line in
                if line.hasPrefix("HELLO") { c.send(FakeServer.hello) }
            }
            defer { server.stop() }
            let (lines, _, _) = cannedCommands(40)
            let (dir, path) = try commandsFile(lines)
            defer { removeTempDirectory(dir) }
            let out = dir + "/out.txt"
            let r = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(server.port)", "--timeout", "0.5", "--retries", "1",
                                            "--output", out, path], seconds: 60)
            #expect(r.status == 1, "\(r.stderr)")
            #expect(r.seconds < 30)
            #expect(r.stdout.contains("0 ok, 0 unknown, 40 failed"))
            let written = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
            #expect(written.count == 40)
            // Nothing is heard while requests are pending: the server stalled (one timeout per attempt).
            #expect(written.allSatisfy { $0.hasSuffix(" failed timeout after 2 attempts (server stalled)") })
        }
    }

    @Test func garbageServerExitsOne() async throws {
        try await blocking {
            let server = try FakeServer { c, _ in c.send("WHAT?\n") }
            defer { server.stop() }
            let (lines, _, _) = cannedCommands(10)
            let (dir, path) = try commandsFile(lines)
            defer { removeTempDirectory(dir) }
            let r = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(server.port)", "--timeout", "0.5", "--retries", "1", "--json", path], seconds: 60)
            #expect(r.status == 1, "\(r.stderr)")
            #expect(r.seconds < 30)
            let json = try jsonObject(r.stdout)
            #expect(json["failed"] as? Int == 10)
            #expect((json["first_failure"] as? String)?.hasPrefix("server unreachable") == true)
        }
    }

    @Test func unreachableServerExitsOne() async throws {
        try await blocking {
            let port = refusedPort()
            let (lines, _, _) = cannedCommands(10)
            let (dir, path) = try commandsFile(lines)
            defer { removeTempDirectory(dir) }
            let r = try runExecutable(client, ["--server", "tcp://127.0.0.1:\(port)", "--connect-timeout", "0.5", path])
            #expect(r.status == 1)
            #expect(r.stdout.contains("first failure: server unreachable (tcp://127.0.0.1:\(port): Connection refused)"))
        }
    }
}
