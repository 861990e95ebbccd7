import AsyncComCore
import AsyncComTestSupport
import Testing

/// Bad map files for `asynccom-server` and bad commands files for `asynccom-client`: every problem is one
/// stderr line `<program>: <file>[:<line>]: <message>` (`<program>: error: ...` when it is fatal), and fatal ones
/// exit 2.
@Suite("Bad input files for both executables", .machineSlot(timeLimit: .minutes(3)))
struct BadFileTests {
    static let deviceHelp = "expected an IPv4 address such as 10.0.0.1 or an IPv6 address such as 2001:db8::1"
    static let commandHelp = "command must be 1-64 characters of A-Z a-z 0-9 _ . -"
    static let noEntries = "no entries: expected lines of ip:command:response:wait (blank and # lines are skipped)"

    /// Map file contents and the message expected after `asynccom-server: error: <path>`.
    static let badMaps: [(String, [UInt8], String)] = [
        ("three fields", Array("10.0.0.1:fast:7:0\n10.0.0.1:slow:7\n".utf8),
         ":2: expected ip:command:response:wait, found 3 fields in '10.0.0.1:slow:7'"),
        ("one field", Array("# header\n\njust-text\n".utf8), ":3: expected ip:command:response:wait, found 1 field in 'just-text'"),
        ("two fields", Array("a:b\n".utf8), ":1: expected ip:command:response:wait, found 2 fields in 'a:b'"),
        ("bad IPv4", Array("10.0.0.256:fast:1:1\n".utf8), ":1: invalid device address '10.0.0.256': \(deviceHelp)"),
        ("host name", Array("gateway:fast:1:1\n".utf8), ":1: invalid device address 'gateway': \(deviceHelp)"),
        ("no device", Array(":fast:1:1\n".utf8), ":1: invalid device address '': \(deviceHelp)"),
        ("blank in command", Array("10.0.0.1:fa st:1:1\n".utf8), ":1: invalid command 'fa st': \(commandHelp)"),
        ("empty command", Array("10.0.0.1::1:1\n".utf8), ":1: invalid command '': \(commandHelp)"),
        ("65-character command", Array("10.0.0.1:\(String(repeating: "a", count: 65)):1:1\n".utf8),
         ":1: invalid command '\(String(repeating: "a", count: 65))': \(commandHelp)"),
        ("invalid UTF-8 command", Array("10.0.0.1:f".utf8) + [0xC3, 0x28] + Array(":1:1\n".utf8),
         ":1: invalid command 'f?(': \(commandHelp)"),
        ("empty response", Array("10.0.0.1:fast::1\n".utf8), ":1: invalid response '': expected a whole number such as 1 or -5"),
        ("text response", Array("10.0.0.1:fast:x:1\n".utf8), ":1: invalid response 'x': expected a whole number such as 1 or -5"),
        ("response out of range", Array("10.0.0.1:fast:9223372036854775808:1\n".utf8),
         ":1: invalid response '9223372036854775808': outside the signed 64-bit range -9223372036854775808 to 9223372036854775807"),
        ("empty wait", Array("10.0.0.1:fast:1:\n".utf8), ":1: invalid wait '': expected seconds >= 0 such as 1 or 0.25"),
        ("negative wait", Array("10.0.0.1:fast:1:-1\n".utf8), ":1: invalid wait '-1': expected seconds >= 0 such as 1 or 0.25"),
        ("exponent wait", Array("10.0.0.1:fast:1:1e3\n".utf8), ":1: invalid wait '1e3': expected seconds >= 0 such as 1 or 0.25"),
        ("too precise wait", Array("10.0.0.1:fast:1:1.0000000001\n".utf8),
         ":1: invalid wait '1.0000000001': at most 9 decimals (nanoseconds)"),
        ("too long wait", Array("10.0.0.1:fast:1:86401\n".utf8), ":1: invalid wait '86401': at most 86400 seconds (one day)"),
        ("duplicate", Array("# c\n10.0.0.1:fast:1:1\n  10.0.0.1:fast:2:2\r\n".utf8),
         ":3: duplicate entry for 10.0.0.1:fast (first defined on line 2)"),
        ("IPv6 duplicate in another spelling", Array("[::1]:fast:1:1\n0:0::1:fast:2:2\n".utf8),
         ":2: duplicate entry for [::1]:fast (first defined on line 1)"),
        ("NUL byte", Array("10.0.0.1:fast:1:1\n".utf8) + [0, 1, 2, 0x0A], ":2: contains a NUL byte: not a text file"),
        ("binary (ELF header)", [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0, 0, 0, 0, 0], ":1: contains a NUL byte: not a text file"),
        ("empty", [], ": \(noEntries)"),
        ("only comments and blanks", Array("# nothing\n\n   \n\t\n".utf8), ": \(noEntries)"),
    ]

    @Test("a bad map: one line naming file and line, exit 2, nothing listened on", arguments: badMaps)
    func badMap(name: String, contents: [UInt8], expected: String) async throws {
        try await blocking {
            let file = try tempFile(bytes: contents)
            defer { file.remove() }
            let r = try runExecutable("asynccom-server", ["--map", file.path, "--listen", "tcp://127.0.0.1:0"])
            #expect(r.status == 2, "\(name)")
            #expect(r.stderr == "asynccom-server: error: \(file.path)\(expected)\n", "\(name)")
            #expect(r.stdout.isEmpty, "\(name): the server started listening")
        }
    }

    @Test("a missing map, a directory, and a long binary line without NUL: one line, exit 2")
    func unreadableMaps() async throws {
        try await blocking {
            let dir = try tempDirectory()
            defer { rmdir(dir) }
            for (path, message) in [(dir + "/missing.txt", "no such file"), (dir, "is a directory, not a file")] {
                let r = try runExecutable("asynccom-server", ["--map", path, "--listen", "tcp://127.0.0.1:0"])
                #expect(r.status == 2)
                #expect(r.stderr == "asynccom-server: error: \(path): \(message)\n")
                #expect(r.stdout.isEmpty)
            }
            // 100 KB of high bytes and no newline: the quote in the message is cut short and printable.
            let blob = try tempFile(bytes: (0..<100_000).map { UInt8(0x80 + $0 % 0x7F) })
            defer { blob.remove() }
            let r = try runExecutable("asynccom-server", ["--map", blob.path, "--listen", "tcp://127.0.0.1:0"])
            #expect(r.status == 2)
            #expect(r.stderr.hasPrefix("asynccom-server: error: \(blob.path):1: expected ip:command:response:wait, found 1 field in '"))
            #expect(r.stderr.hasSuffix("...'\n"))
            #expect(r.stderr.split(separator: "\n").count == 1)
            #expect(r.stderr.utf8.count < 300)
            #expect(r.stderr.utf8.allSatisfy { $0 == 0x0A || ($0 >= 0x20 && $0 < 0x7F) })
        }
    }

    @Test("malformed commands lines: each reported as FILE:LINE and counted; the rest is answered, exit 0")
    func malformedCommandLines() async throws {
        try await blocking {
            let server = try TestServer(map: hardeningMap, reactors: 1)
            let lines: [[UInt8]] = [
                Array("10.0.0.1:fast".utf8),  // 1: ok, 7
                Array("10.0.0.1".utf8),  // 2
                Array(":fast".utf8),  // 3
                Array("10.0.0.1:".utf8),  // 4
                Array("10.0.0.256:fast".utf8),  // 5
                Array("10.0.0.1:fa/st".utf8),  // 6
                Array("gateway:fast".utf8),  // 7
                Array("10.0.0.1:fa st".utf8),  // 8
                Array("10.0.0.1:f".utf8) + [0xC3, 0x28],  // 9
                Array("10.0.0.1:\(String(repeating: "a", count: 65))".utf8),  // 10
                Array("[10.0.0.1]:fast".utf8),  // 11
                Array("  10.0.0.2:fast \r".utf8),  // 12: ok, -1 (blanks and CR trimmed)
                Array("# comment".utf8),  // 13
                [],  // 14
                Array("10.0.0.1:unknown".utf8),  // 15: unknown
                Array("::1:fast".utf8),  // 16: ok, 61
            ]
            let file = try tempFile(bytes: lines.joined(separator: [0x0A]) + [0x0A])
            defer { file.remove() }
            let r = try runExecutable("asynccom-client", ["--server", "tcp://127.0.0.1:\(server.port)", file.path])
            #expect(r.status == 0, "\(r.stderr)")
            let expected = [
                "2: expected ip:command: missing ':' between device and command",
                "3: expected ip:command: missing device before ':'",
                "4: expected ip:command: missing command after ':'",
                "5: expected ip:command: invalid device address",
                "6: expected ip:command: \(Self.commandHelp)",
                "7: expected ip:command: invalid device address",
                "8: expected ip:command: \(Self.commandHelp)",
                "9: expected ip:command: \(Self.commandHelp)",
                "10: expected ip:command: command longer than 64 characters",
                "11: expected ip:command: invalid device address",
            ].map { "asynccom-client: \(file.path):\($0)" }
            #expect(r.stderr.split(separator: "\n").map(String.init) == expected)
            #expect(r.stdout.contains("sum: 67\n"))
            #expect(r.stdout.contains("commands: 3 ok, 1 unknown, 0 failed, 10 malformed\n"))
        }
    }

    @Test("commands files that cannot be used: missing, a directory, binary: one line, exit 2; empty: a warning, exit 0")
    func unusableCommandsFiles() async throws {
        try await blocking {
            let server = try TestServer(map: hardeningMap, reactors: 1)
            let url = "tcp://127.0.0.1:\(server.port)"
            let dir = try tempDirectory()
            defer { rmdir(dir) }
            let binary = try tempFile(bytes: [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0, 0, 0, 0, 0, 0x0A, 0x31])
            defer { binary.remove() }
            let laterNUL = try tempFile(bytes: Array("10.0.0.1:fast\n10.0.0.1:fast\n".utf8) + [0x31, 0, 0x0A])
            defer { laterNUL.remove() }
            for (path, message) in [
                (dir + "/missing.txt", ": no such file"), (dir, ": is a directory, not a file"),
                (binary.path, ":1: contains a NUL byte: not a text file"),
                (laterNUL.path, ":3: contains a NUL byte: not a text file"),
            ] {
                let r = try runExecutable("asynccom-client", ["--server", url, path])
                #expect(r.status == 2, "\(path)")
                #expect(r.stderr == "asynccom-client: error: \(path)\(message)\n")
                #expect(r.stdout.isEmpty, "no summary for a job that failed on its input")
            }
            for contents in ["", "# nothing to do\n\n"] {
                let empty = try TempFile(contents)
                defer { empty.remove() }
                let r = try runExecutable("asynccom-client", ["--server", url, empty.path])
                #expect(r.status == 0)
                #expect(r.stderr == "asynccom-client: \(empty.path): no commands (the input is empty or holds only blank and # lines)\n")
                #expect(r.stdout.contains("commands: 0 ok, 0 unknown, 0 failed, 0 malformed\n"))
            }
        }
    }
}
