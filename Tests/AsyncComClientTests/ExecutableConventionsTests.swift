import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Foundation
import Testing

/// What the three executables (asynccom-server, asynccom-client, asynccom-bench) share: `--version`, exit
/// statuses, the error prefix, help that fits the terminal, `HOST:PORT` endpoints, the bench's scratch folder
/// and its one table.
@Suite(.machineSlot(timeLimit: .minutes(3))) struct ExecutableConventionsTests {
    static let programs = ["asynccom-server", "asynccom-client", "asynccom-bench"]

    /// Runs `program` with `environment` (NAME=value) added.
    func run(_ program: String, _ arguments: [String], environment: [String] = []) throws -> (status: Int32, stdout: String, stderr: String) {
        try runToolCapturing("/usr/bin/env", environment + [try executablePath(program)] + arguments, stdin: "")
    }

    @Test func versionIsTheOneReleaseString() async throws {
        try await blocking {
            for program in Self.programs {
                let r = try run(program, ["--version"])
                #expect(r.status == 0, "\(program): \(r.stderr)")
                #expect(r.stdout == "\(program) \(AsyncComVersion.string)\n", "\(program)")
            }
            // HELLO's server=asynccom/<version> and /metrics' build info say the same string.
            #expect(ServerConfiguration.defaultServerVersion == AsyncComVersion.string)
        }
    }

    @Test func usageErrorsExit64WithOnePrefix() async throws {
        try await blocking {
            let dir = try tempDirectory()
            defer { removeTempDirectory(dir) }
            let map = dataPath("seed/map.txt")
            let cases: [(String, [String])] = [
                ("asynccom-server", ["--bogus"]),
                ("asynccom-server", []),
                ("asynccom-server", ["--map", map, "--listen", "http://127.0.0.1:1"]),
                ("asynccom-server", ["--map", map, "--tls-cert", "x.pem"]),
                ("asynccom-server", ["--map", map, "--reactors", "0", "--listen", "127.0.0.1:0"]),
                ("asynccom-client", ["--bogus", "x"]),
                ("asynccom-client", []),
                ("asynccom-client", ["--batch", "0", "x"]),
                ("asynccom-client", ["--server", "http://x:1", "x"]),
                ("asynccom-bench", ["--bogus"]),
                ("asynccom-bench", ["run", "no-such-scenario", "--scratch", dir]),
                // A filter that leaves nothing to run (found from outside: an empty table and exit 0).
                ("asynccom-bench", ["run", "hostfloor", "--variant", "defaults", "--scratch", dir]),
                ("asynccom-bench", ["generate", "--devices", "0", "--out", dir]),
            ]
            for (program, arguments) in cases {
                let r = try run(program, arguments)
                #expect(r.status == 64, "\(program) \(arguments): \(r.status) \(r.stderr)")
                #expect(r.stderr.hasPrefix("\(program): error: "), "\(program) \(arguments): \(r.stderr)")
                #expect(r.stderr.contains("--help"), "\(program) \(arguments): \(r.stderr)")
                #expect(r.stdout.isEmpty, "\(program) \(arguments)")
            }
        }
    }

    @Test func badInputFilesExit2AndFailuresExit1WithTheSamePrefix() async throws {
        try await blocking {
            let dir = try tempDirectory()
            defer { removeTempDirectory(dir) }
            let missing = dir + "/missing.txt"
            let server = try run("asynccom-server", ["--map", missing, "--listen", "127.0.0.1:0"])
            #expect(server.status == 2, "\(server.stderr)")
            #expect(server.stderr.hasPrefix("asynccom-server: error: \(missing)"), "\(server.stderr)")
            let client = try run("asynccom-client", [missing])
            #expect(client.status == 2, "\(client.stderr)")
            #expect(client.stderr.hasPrefix("asynccom-client: error: \(missing)"), "\(client.stderr)")
            // Run-time failures: results that cannot be written (checked before anything is sent) ...
            let output = dir + "/no/such/folder/results.txt"
            let unwritable = try run("asynccom-client", ["--output", output, dataPath("seed/commands.txt")])
            #expect(unwritable.status == 1, "\(unwritable.stderr)")
            #expect(unwritable.stderr.hasPrefix("asynccom-client: error: \(output): cannot open for writing"), "\(unwritable.stderr)")
            // ... and the server's port taken.
            let (first, port) = try ServerProcess.listening(map: dataPath("seed/map.txt"))
            let taken = try run("asynccom-server", ["--map", dataPath("seed/map.txt"), "--listen", "127.0.0.1:\(port)"])
            #expect(taken.status == 1, "\(taken.stderr)")
            #expect(taken.stderr.hasPrefix("asynccom-server: error: "), "\(taken.stderr)")
            try first.stop()
        }
    }

    /// Every help text at 60, 80 and 120 columns: no line wider than the terminal (but a single word that is
    /// wider), no word broken, indented list items continued indented, example commands continued with ` \`
    /// so they still run when pasted.
    @Test func helpFitsTheTerminal() async throws {
        try await blocking {
            let helps: [(String, [String])] = [
                ("asynccom-server", ["--help"]), ("asynccom-client", ["--help"]), ("asynccom-bench", ["--help"]),
                ("asynccom-bench", ["run", "--help"]), ("asynccom-bench", ["generate", "--help"]),
            ]
            for (program, arguments) in helps {
                let wide = try run(program, arguments, environment: ["COLUMNS=1000"])
                #expect(wide.status == 0)
                let wideWords = wide.stdout.split(whereSeparator: \.isWhitespace).filter { $0 != "\\" }
                for width in [60, 80, 120] {
                    let r = try run(program, arguments, environment: ["COLUMNS=\(width)"])
                    #expect(r.status == 0)
                    let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
                    for line in lines where line.count > width {
                        #expect(!line.trimmingPrefix(while: { $0 == " " }).contains(" "),
                                "\(program) \(arguments) at \(width): \(line.count) columns: \(line)")
                    }
                    let words = r.stdout.split(whereSeparator: \.isWhitespace).filter { $0 != "\\" }
                    #expect(words == wideWords, "\(program) \(arguments) at \(width): words differ from the unwrapped help")
                    // An indented block (a list, examples) stays indented to its end.
                    var inBlock = false
                    for line in lines {
                        if line.isEmpty { inBlock = false; continue }
                        if line.hasPrefix("USAGE:") || line.hasSuffix(":") && !line.hasPrefix(" ") { inBlock = false }
                        if line.hasPrefix("  ") && !line.hasPrefix("  -") { inBlock = true; continue }
                        #expect(!inBlock || line.hasPrefix(" "), "\(program) \(arguments) at \(width): \(line)")
                    }
                }
            }
            // A pasted example runs: its lines, joined at the ` \` ends, are the example as written.
            let narrow = try run("asynccom-server", ["--help"], environment: ["COLUMNS=60"]).stdout
            let joined = narrow.replacingOccurrences(of: " \\\n", with: " ").split(separator: "\n").map {
                $0.split(separator: " ").joined(separator: " ")
            }
            #expect(joined.contains("asynccom-server --map map.txt --listen tcp://[::]:5557 --listen unix:///tmp/ac.sock"))
            #expect(joined.contains("printf 'HELLO 1\\nREQ 1 137.72.95.0:foo\\nQUIT\\n' | nc 127.0.0.1 5557"))
        }
    }

    @Test func hostAndPortMeanTCP() async throws {
        try await blocking {
            let server = try ServerProcess(arguments: ["--map", dataPath("seed/map.txt"), "--listen", "127.0.0.1:0", "--reactors", "1"])
            let endpoint = try #require(try server.listeningEndpoints(count: 1).first)
            guard case .tcp("127.0.0.1", let port) = endpoint else { throw TestFailure("listening on \(endpoint)") }
            let r = try run("asynccom-client", ["--server", "127.0.0.1:\(port)", "--json", "--quiet", dataPath("seed/commands.txt")])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("\"sum\":512"), "\(r.stdout)")
            try server.stop()
            // A bad endpoint is a usage error naming the option, the same way in both.
            let map = dataPath("seed/map.txt")
            for (program, option, rest) in [("asynccom-server", "--listen", ["--map", map]), ("asynccom-server", "--http-listen", ["--map", map]),
                                            ("asynccom-client", "--server", ["x"])] {
                let bad = try run(program, [option, "127.0.0.1"] + rest)
                #expect(bad.status == 64, "\(program) \(option): \(bad.stderr)")
                #expect(bad.stderr.hasPrefix("\(program): error: \(option): invalid endpoint '127.0.0.1': missing ':PORT'"), "\(bad.stderr)")
            }
        }
    }

    @Test func benchScratchIsPerUserAndTheTableIsPrintedOnce() async throws {
        try await blocking {
            let tmp = try tempDirectory()
            defer { removeTempDirectory(tmp) }
            let scratch = "\(tmp)/asynccom-bench-\(getuid())"
            let r = try run("asynccom-bench", ["run", "seed", "--runs", "1"], environment: ["TMPDIR=\(tmp)"])
            #expect(r.status == 0, "\(r.stderr)")
            var info = stat()
            #expect(lstat(scratch, &info) == 0, "no \(scratch)")
            #expect(info.st_mode & 0o777 == 0o700)
            #expect(info.st_uid == getuid())
            #expect(FileManager.default.fileExists(atPath: scratch + "/seed/map.txt"))
            let header = "| scenario "
            #expect(r.stdout.components(separatedBy: header).count == 2, "stdout: \(r.stdout)")
            #expect(!r.stderr.contains(header), "stderr: \(r.stderr)")
            #expect(r.stderr.contains("seed: done"), "stderr: \(r.stderr)")

            // A default folder others may write to is refused, not used.
            chmod(scratch, 0o777)
            let open = try run("asynccom-bench", ["run", "seed", "--runs", "1"], environment: ["TMPDIR=\(tmp)"])
            #expect(open.status == 1, "\(open.stderr)")
            #expect(open.stderr.hasPrefix("asynccom-bench: error: \(scratch) belongs to another user or others may write to it"),
                    "\(open.stderr)")
        }
    }
}
