import AsyncComClient
import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Foundation
import Testing

/// Writes a map of `devices` devices 10.9.<i/250>.<i%250+1> with commands foo (response d, wait waitOf(i)) and
/// bar (response -d, no wait), and returns its path.
func writeMap(in dir: String, devices: Int, waitOf: (Int) -> String) throws -> String {
    var text = "# generated for the client tests\n"
    for i in 0..<devices {
        let d = i % 250 + 1
        text += "10.9.\(i / 250).\(d):foo:\(d):\(waitOf(i))\n"
        text += "10.9.\(i / 250).\(d):bar:\(-d):0\n"
    }
    let path = dir + "/map.txt"
    try writeFile(path, text)
    return path
}

/// Commands over the generated map: foo for every device, then bar for every device, `rounds` times.
func mapCommands(devices: Int, rounds: Int = 1) -> (lines: [String], sum: Int128) {
    var lines: [String] = []
    var sum: Int128 = 0
    for _ in 0..<rounds {
        for command in ["foo", "bar"] {
            for i in 0..<devices {
                let d = i % 250 + 1
                lines.append("10.9.\(i / 250).\(d):\(command)")
                sum += Int128(command == "foo" ? d : -d)
            }
        }
    }
    return (lines, sum)
}

@Suite(.machineSlot(timeLimit: .minutes(3))) struct EndToEndTests {
    let seedMap = dataPath("seed/map.txt")
    let seedCommands = dataPath("seed/commands.txt")

    @Test(arguments: [1, 16, 64]) func seedJob(batch: Int) async throws {
        let server = try TestServer(mapFile: seedMap)
        defer { server.stop() }
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [server.endpoint], batch: batch))
        let summary = try await client.run(source: try FileCommandSource(path: seedCommands))
        #expect(summary.sum == 512)
        #expect(summary.ok == 512 && summary.unknown == 0 && summary.failed == 0 && summary.malformed == 0)
        #expect(summary.requests == (512 + batch - 1) / batch)
        // Every seed command waits 1 s on the server.
        #expect(summary.latency.p50Nanos >= 990_000_000)
        #expect(summary.elapsedSeconds >= 0.99)
    }

    @Test func unknownAndMalformedLinesAreCounted() async throws {
        let server = try TestServer(mapFile: seedMap)
        defer { server.stop() }
        let dir = try tempDirectory()
        defer { removeTempDirectory(dir) }
        let seed = try String(contentsOfFile: seedCommands, encoding: .utf8)
        let path = dir + "/commands.txt"
        try writeFile(path, seed + "1.1.1.1:foo\nnot a command\n137.72.95.0:nope\n# comment\n\n[::1]:foo\n")
        let malformed = Reported()
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [server.endpoint]))
        let summary = try await client.run(source: try FileCommandSource(path: path, onMalformed: { malformed.errors.append($0) }))
        #expect(summary.sum == 512 && summary.ok == 512 && summary.unknown == 3 && summary.malformed == 1 && summary.failed == 0)
        #expect(malformed.errors.map(\.line) == [514])
        // The CLI agrees, and exits 0: unknown is an answer.
        let r = try await blocking { try runExecutable("asynccom-client", ["--server", "tcp://127.0.0.1:\(server.port)", path]) }
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("commands: 512 ok, 3 unknown, 0 failed, 1 malformed"))
        #expect(r.stderr.contains("asynccom-client: \(path):514: "))
    }

    @Test(arguments: [false, true]) func answersCoverEveryCommandOnceAndAgreeWithResults(alsoResults: Bool) async throws {
        let dir = try tempDirectory()
        defer { removeTempDirectory(dir) }
        let map = try writeMap(in: dir, devices: 300) { i in "0.0\(i % 5)" }
        let server = try TestServer(mapFile: map)
        defer { server.stop() }
        var (lines, sum) = mapCommands(devices: 300)
        lines.append("10.250.0.1:foo")  // unknown device
        let answers = AnswerLog()
        let results = ResultLog()
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [server.endpoint], batch: 7))
        let summary = try await client.run(
            source: ArrayCommandSource(lines: lines), onResult: alsoResults ? { results.append($0) } : nil,
            onAnswer: { answers.append($0) })
        #expect(summary.sum == sum && summary.ok == 600 && summary.unknown == 1 && summary.failed == 0)
        // Every command exactly once, with the outcome the map implies.
        var seen = [CommandOutcome?](repeating: nil, count: lines.count)
        for answer in answers.answers {
            #expect(answer.count >= 1 && answer.count <= 7)
            for i in 0..<answer.count {
                let s = answer.sequence(at: i)
                #expect(seen[s] == nil, "sequence \(s) answered twice")
                seen[s] = answer.outcome(at: i)
            }
        }
        for (s, line) in lines.enumerated() {
            let d = Int64(line.split(separator: ":")[0].split(separator: ".")[3])!
            let expected: CommandOutcome = line.hasPrefix("10.250.") ? .unknown : .value(line.hasSuffix(":foo") ? d : -d)
            #expect(seen[s] == expected, "\(line)")
        }
        if alsoResults {
            #expect(results.results.count == lines.count)
            for r in results.results { #expect(seen[r.sequence] == r.outcome) }
        }
    }

    @Test func outOfOrderRepliesMatchTheMap() async throws {
        let dir = try tempDirectory()
        defer { removeTempDirectory(dir) }
        // Waits 0, 0.1, ... 0.4 s by device: requests complete out of order.
        let map = try writeMap(in: dir, devices: 300) { i in "0.\(i % 5)" }
        let server = try TestServer(mapFile: map)
        defer { server.stop() }
        let (lines, sum) = mapCommands(devices: 300)
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [server.endpoint], batch: 1))
        let (summary, results) = try await client.runCollecting(lines)
        #expect(summary.sum == sum && summary.ok == 600 && summary.failed == 0)
        #expect(results.map(\.sequence) != Array(0..<600))
        for r in results {
            let item = r.entry.item
            let d = Int64(item.split(separator: ":")[0].split(separator: ".")[3])!
            #expect(r.outcome == .value(item.hasSuffix(":foo") ? d : -d), "\(item)")
            if item.hasSuffix(":foo") {
                // Never answered before the modelled wait.
                #expect(r.latencyNanos >= UInt64((d - 1) % 5) * 100_000_000)
            }
        }
    }

    @Test func orderedTextOutputWithMixedWaits() async throws {
        try await blocking {
            let dir = try tempDirectory()
            defer { removeTempDirectory(dir) }
            let map = try writeMap(in: dir, devices: 100) { i in "0.\((100 - i) % 4)" }
            let server = try TestServer(mapFile: map)
            defer { server.stop() }
            let (lines, sum) = mapCommands(devices: 100, rounds: 2)
            let commands = dir + "/commands.txt"
            try writeFile(commands, lines.joined(separator: "\n") + "\n")
            let out = dir + "/out.txt"
            let r = try runExecutable("asynccom-client", ["--server", "tcp://127.0.0.1:\(server.port)", "--batch", "3",
                                                               "--window", "8", "--output", out, commands])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("sum: \(sum)\n"))
            let written = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init)
            #expect(written.count == lines.count)
            for (i, line) in written.enumerated() {
                let d = Int(lines[i].split(separator: ":")[0].split(separator: ".")[3])!
                #expect(line == "\(lines[i]) \(lines[i].hasSuffix(":foo") ? d : -d)")
            }
        }
    }

    @Test func serverStartedAfterTheClient() async throws {
        let port = unusedPort()
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [tcp(port)], connectTimeout: 30))
        let starter = testTask {
            try await Task.sleep(for: .seconds(1))
            return try TestServer(mapFile: seedMap, port: port)
        }
        let summary = try await client.run(source: try FileCommandSource(path: seedCommands))
        let server = try await starter.value
        server.stop()
        #expect(summary.sum == 512 && summary.ok == 512 && summary.failed == 0)
        #expect(summary.elapsedSeconds >= 1.9)
    }

    @Test func serverKilledMidJobAndRestarted() async throws {
        try await blocking {
            let dir = try tempDirectory()
            defer { removeTempDirectory(dir) }
            let map = try writeMap(in: dir, devices: 1000) { _ in "1" }
            let (lines, sum) = mapCommands(devices: 1000, rounds: 1)  // 2000 commands: 1000 x 1 s, 1000 x 0 s
            let commands = dir + "/commands.txt"
            try writeFile(commands, lines.joined(separator: "\n") + "\n")
            let (first, port) = try ServerProcess.listening(map: map)
            // 125 requests of 16, 25 in flight: the foo half takes about 5 rounds of 1 s.
            let client = try ChildProcess("asynccom-client", [
                "--server", "tcp://127.0.0.1:\(port)", "--batch", "16", "--window", "25", "--timeout", "5",
                "--connect-timeout", "30", "--json", "--quiet", "--log-level", "debug", commands])
            // Killed once a whole window (400 commands, each request due in 1 s) is in flight.
            let observer = try LineClient(port: port)
            #expect(try eventually(within: 30) { try observer.stats()["commands"]! >= 400 })
            first.signal(SIGKILL)
            _ = try first.waitForExit(seconds: 10)
            // Restarted once the client has found it down (a failed reconnect attempt).
            #expect(eventually(within: 30) { client.stderr.contains("connect failed") }, "\(client.stderr)")
            let (second, _) = try ServerProcess.listening(map: map, port: port)
            defer { second.signal(SIGKILL) }
            let r = try client.result(seconds: 120)
            #expect(r.status == 0, "\(r.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            #expect(json["sum"] as? Int == Int(sum))
            #expect(json["ok"] as? Int == 2000)
            #expect(json["failed"] as? Int == 0)
            #expect((json["resends"] as? Int ?? 0) > 0)
            #expect((json["reconnects"] as? Int ?? 0) >= 1)
        }
    }

    @Test func seedJobThroughTheCLI() async throws {
        try await blocking {
            let server = try TestServer(mapFile: seedMap)
            defer { server.stop() }
            let r = try runExecutable("asynccom-client", ["--server", "tcp://127.0.0.1:\(server.port)", "--batch", "16", seedCommands])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.hasPrefix("sum: 512\ncommands: 512 ok, 0 unknown, 0 failed, 0 malformed\n"))
        }
    }

    @Test func unixSocketEndpoint() async throws {
        let dir = try tempDirectory()
        defer { removeTempDirectory(dir) }
        let path = dir + "/s.sock"
        let configuration = ServerConfiguration(map: try DeviceMap(contentsOfFile: seedMap), endpoints: [.unix(path: path)], reactors: 1)
        let server = Server(configuration: configuration)
        try server.start()
        defer {
            server.beginShutdown()
            server.waitUntilStopped()
        }
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [.unix(path: path)], connectionsPerServer: 2))
        let summary = try await client.run(source: try FileCommandSource(path: seedCommands))
        #expect(summary.sum == 512 && summary.ok == 512)
    }

    @Test func twoServersShareTheDevices() async throws {
        let a = try TestServer(mapFile: seedMap, reactors: 1)
        let b = try TestServer(mapFile: seedMap, reactors: 1)
        defer { a.stop(); b.stop() }
        let client = AsyncComClient.quiet(ClientConfiguration(servers: [a.endpoint, b.endpoint]))
        let summary = try await client.run(source: try FileCommandSource(path: seedCommands))
        #expect(summary.sum == 512 && summary.ok == 512)
        #expect(summary.servers[0].ok > 0 && summary.servers[1].ok > 0)
        #expect(summary.servers[0].ok + summary.servers[1].ok == 512)
    }
}
