import Foundation
import Testing
@testable import AsyncComCore

private func readAll(_ path: String, maxLine: Int = 1 << 20) throws(InputFileError) -> [(String, Int)] {
    let reader = try LineReader(path: path, maxLine: maxLine)
    var lines: [(String, Int)] = []
    while let (line, number) = try reader.next() { lines.append((String(decoding: line, as: UTF8.self), number)) }
    return lines
}

private func readError(_ path: String, maxLine: Int = 1 << 20) -> InputFileError? {
    do throws(InputFileError) {
        _ = try readAll(path, maxLine: maxLine)
        return nil
    } catch {
        return error
    }
}

/// The lines as `readLines` hands them out, `limit` per call, and the error that ended them (if any). Every
/// third line is not counted (as the client's source does not count a blank line), so calls return with more
/// lines handed out than `limit`.
private func readBatched(_ path: String, maxLine: Int = 1 << 20, limit: Int) throws -> (lines: [(String, Int)], error: InputFileError?) {
    let reader = try LineReader(path: path, maxLine: maxLine)
    var lines: [(String, Int)] = []
    do throws(InputFileError) {
        while true {
            var accepted = 0
            let stop = try reader.readLines(limit: limit, accepted: &accepted) { line, number in
                lines.append((String(decoding: line, as: UTF8.self), number))
                return lines.count % 3 != 0
            }
            if stop == .end { return (lines, nil) }
            #expect(stop == .limit && accepted == limit)
        }
    } catch {
        return (lines, error)
    }
}

/// `readLines` hands out exactly what `next()` does, with the same numbers, and fails at the same line.
private func expectBatchedLikeNext(_ path: String, maxLine: Int = 1 << 20) throws {
    var expected: [(String, Int)] = []
    var expectedError: InputFileError?
    do throws(InputFileError) {
        let reader = try LineReader(path: path, maxLine: maxLine)
        while let (line, number) = try reader.next() { expected.append((String(decoding: line, as: UTF8.self), number)) }
    } catch {
        expectedError = error
    }
    for limit in [1, 2, 7, 2048] {
        let (lines, error) = try readBatched(path, maxLine: maxLine, limit: limit)
        #expect(lines.map(\.0) == expected.map(\.0), "limit \(limit)")
        #expect(lines.map(\.1) == expected.map(\.1), "limit \(limit)")
        #expect(error == expectedError, "limit \(limit)")
    }
}

@Suite struct LineReaderTests {
    let dir = temporaryDirectory()

    func file(_ name: String, _ bytes: [UInt8]) -> String {
        let url = dir.appendingPathComponent(name)
        writeFile(url, bytes)
        return url.path
    }

    func file(_ name: String, _ text: String) -> String { file(name, Array(text.utf8)) }

    @Test func smallFiles() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try readAll(file("a", "one\ntwo\r\n\nthree"))
        #expect(a.map(\.0) == ["one", "two", "", "three"])
        #expect(a.map(\.1) == [1, 2, 3, 4])
        #expect(try readAll(file("b", "")).isEmpty)
        #expect(try readAll(file("c", "\n")).map(\.0) == [""])
        #expect(try readAll(file("d", "x\r\n")).map(\.0) == ["x"])
        #expect(try readAll(file("e", "last\r")).map(\.0) == ["last"])
        #expect(try readAll(file("f", "a\rb\n")).map(\.0) == ["a\rb"])
    }

    @Test func chunkBoundaries() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        // ~3.5 MiB of lines of varying length, so lines straddle every 1 MiB read.
        var expected: [String] = []
        var text = ""
        var rng = SplitMix64(seed: 7)
        var size = 0
        while size < 3_500_000 {
            let line = String(repeating: Character(UnicodeScalar(UInt8(97 + expected.count % 26))), count: Int(rng.next() % 300))
            expected.append(line)
            text += line
            text += rng.next() % 4 == 0 ? "\r\n" : "\n"
            size = text.utf8.count
        }
        let path = file("big", text + "tail-without-newline")
        expected.append("tail-without-newline")
        let reader = try LineReader(path: path, maxLine: 512)
        let capacity = reader.buffer.capacity
        var n = 0
        while let (line, number) = try reader.next() {
            #expect(number == n + 1)
            if line.count != expected[n].utf8.count || String(decoding: line, as: UTF8.self) != expected[n] {
                Issue.record("line \(number) differs")
                break
            }
            n += 1
        }
        #expect(n == expected.count)
        #expect(reader.buffer.capacity == capacity, "memory must stay bounded by maxLine + chunk")
    }

    @Test func lineTooLong() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let ten = String(repeating: "x", count: 10)
        #expect(try readAll(file("ok", "a\n\(ten)\n\(ten)\r\n\(ten)"), maxLine: 10).count == 4)
        #expect(readError(file("long1", "a\nb\n\(ten)x\nc\n"), maxLine: 10)?.line == 3)
        #expect(readError(file("long2", "a\n\(ten)x"), maxLine: 10)
                == InputFileError(file: dir.appendingPathComponent("long2").path, line: 2, message: "line longer than 10 bytes"))
        // Found while still buffering: a huge line without LF stops at maxLine, it is not read to the end.
        let huge = String(repeating: "z", count: 3_000_000)
        #expect(readError(file("long3", "ok\n\(huge)\nnext\n"), maxLine: 100)?.line == 2)
    }

    @Test func nulByte() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = file("nul", Array("a\nb\nc\u{0}d\ne\n".utf8))
        let reader = try LineReader(path: path)
        #expect(try reader.next()?.number == 1)
        #expect(try reader.next()?.number == 2)
        #expect(throws: InputFileError(file: path, line: 3, message: "contains a NUL byte: not a text file")) {
            _ = try reader.next()
        }
        // The reader stays failed.
        #expect(throws: InputFileError.self) { _ = try reader.next() }

        // A NUL far beyond the first chunk is located on its own line.
        var text = ""
        for i in 0..<100_000 { text += "line \(i)\n" }
        var bytes = Array(text.utf8)
        bytes += Array("x\u{0}\n".utf8)
        #expect(readError(file("nul2", bytes))?.line == 100_001)
        #expect(readError(file("nul3", [0x00]))?.line == 1)
    }

    /// `readLines` (the client's file source) against `next()`: the same lines, numbers and errors, whatever the
    /// limit per call, across chunk boundaries, CR LF, a last line without LF, long lines and NUL bytes.
    @Test func readLinesHandsOutWhatNextDoes() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        for (i, text) in ["one\ntwo\r\n\nthree", "", "\n", "x\r\n", "last\r", "a\rb\n"].enumerated() {
            try expectBatchedLikeNext(file("small\(i)", text))
        }
        var text = ""
        var rng = SplitMix64(seed: 11)
        while text.utf8.count < 2_500_000 {
            text += String(repeating: "q", count: Int(rng.next() % 40))
            text += rng.next() % 5 == 0 ? "\r\n" : "\n"
        }
        try expectBatchedLikeNext(file("big", text + "tail"))
        let ten = String(repeating: "x", count: 10)
        try expectBatchedLikeNext(file("long1", "a\nb\n\(ten)x\nc\n"), maxLine: 10)
        try expectBatchedLikeNext(file("long2", "a\n\(ten)x"), maxLine: 10)
        try expectBatchedLikeNext(file("long3", "ok\n\(String(repeating: "z", count: 3_000_000))\nnext\n"), maxLine: 100)
        try expectBatchedLikeNext(file("nul", Array("a\nb\nc\u{0}d\ne\n".utf8)))
        var lines = ""
        for i in 0..<100_000 { lines += "line \(i)\n" }
        try expectBatchedLikeNext(file("nul2", Array(lines.utf8) + Array("x\u{0}\nmore\n".utf8)))
        #expect(try readBatched(file("nul3", Array(lines.utf8) + Array("x\u{0}\n".utf8)), limit: 2048).error?.line == 100_001)
    }

    @Test func openErrors() {
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = dir.appendingPathComponent("missing.txt").path
        #expect(readError(missing) == InputFileError(file: missing, line: nil, message: "no such file"))
        #expect(readError(dir.path) == InputFileError(file: dir.path, line: nil, message: "is a directory, not a file"))
    }

    @Test(.enabled(if: geteuid() != 0, "root reads any file"))
    func permissionDenied() {
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = file("secret", "x\n")
        chmod(path, 0)
        #expect(readError(path) == InputFileError(file: path, line: nil, message: "permission denied"))
    }
}

@Suite struct CommandsFileTests {
    func parse(_ line: String, number: Int = 3) -> CommandsFile.Line {
        withBytes(line) { CommandsFile.parse(line: $0, number: number, fileName: "cmds.txt") }
    }

    @Test func commands() {
        guard case .command(let e) = parse("  10.0.0.1:foo \t") else { Issue.record("not a command"); return }
        #expect(e == CommandEntry(device: DeviceAddress.parse("10.0.0.1")!, item: "10.0.0.1:foo", commandStart: 9, line: 3))
        #expect(e.command == "foo")
        guard case .command(let v6) = parse("[2001:db8::1]:reboot\r", number: 9) else { Issue.record("not a command"); return }
        #expect(v6.item == "[2001:db8::1]:reboot")
        #expect(v6.command == "reboot")
        #expect(v6.device == DeviceAddress.parse("2001:db8::1"))
        #expect(v6.line == 9)
    }

    @Test func skipped() {
        for line in ["", "   ", "\t", "# comment", "   # indented", "#10.0.0.1:foo"] {
            #expect(parse(line) == .skip, "'\(line)'")
        }
    }

    @Test func malformed() {
        #expect(parse("10.0.0.1") == .malformed(InputFileError(file: "cmds.txt", line: 3,
                message: "expected ip:command: missing ':' between device and command")))
        #expect(parse("10.0.0.300:foo", number: 12) == .malformed(InputFileError(file: "cmds.txt", line: 12,
                message: "expected ip:command: invalid device address")))
        #expect(parse("10.0.0.1:foo bar") == .malformed(InputFileError(file: "cmds.txt", line: 3,
                message: "expected ip:command: command must be 1-64 characters of A-Z a-z 0-9 _ . -")))
        #expect(parse("10.0.0.1:foo:1:1").isMalformed)
    }
}

extension CommandsFile.Line {
    var isMalformed: Bool { if case .malformed = self { return true } else { return false } }
}


/// A feed scripted by the test: hands out the pieces given to it, `.notYet` when it has none.
private final class ScriptedFeed: LineFeed {
    var pieces: [[UInt8]] = []
    var ended = false
    var stopped = false
    var notYetCount = 0

    func take(into: UnsafeMutableRawPointer, count: Int, wait: Bool) -> LineFeedResult {
        guard !pieces.isEmpty else {
            if ended { return .end }
            notYetCount += 1
            return .notYet
        }
        var piece = pieces.removeFirst()
        let n = min(count, piece.count)
        piece.withUnsafeBytes { into.copyMemory(from: $0.baseAddress!, byteCount: n) }
        piece.removeFirst(n)
        if !piece.isEmpty { pieces.insert(piece, at: 0) }
        return .bytes(n)
    }

    func stop() { stopped = true }
}

@Suite struct LineReaderFeedTests {
    /// Lines through a feed: `nextIfReady` says `.notYet` when no whole line has arrived, never waits, and picks
    /// up a line split over several pieces once its end comes (numbering unchanged, the NUL and length checks
    /// as for files).
    @Test func nextIfReadyNeverWaits() throws {
        let reader = try LineReader(path: "-")
        let feed = ScriptedFeed()
        var handedOver: (Int32, Bool)?
        #expect(reader.install { fd, owns in handedOver = (fd, owns); return feed })
        #expect(handedOver?.0 == 0 && handedOver?.1 == false)  // stdin: not the feed's to close
        func next() throws -> String? {
            switch try reader.nextIfReady() {
            case .line(let line, let number): return "\(number):" + String(decoding: line, as: UTF8.self)
            case .notYet: return nil
            case .end: return "end"
            }
        }
        #expect(try next() == nil)
        feed.pieces = [Array("one\ntw".utf8)]
        #expect(try next() == "1:one")
        #expect(try next() == nil)
        feed.pieces = [Array("o\r".utf8), Array("\nthree".utf8)]
        #expect(try next() == "2:two")
        #expect(try next() == nil)
        feed.ended = true
        #expect(try next() == "3:three")
        #expect(try next() == "end")
        #expect(feed.notYetCount == 3)
        withExtendedLifetime(reader) {}
    }

    @Test func aStoppedReaderStopsItsFeed() throws {
        let feed = ScriptedFeed()
        do {
            let reader = try LineReader(path: "-")
            #expect(reader.install { _, _ in feed })
            #expect(!reader.install { _, _ in ScriptedFeed() })  // one feed per reader
        }
        #expect(feed.stopped)
    }

    @Test func aNULByteFromAFeedIsAnError() throws {
        let reader = try LineReader(path: "-")
        let feed = ScriptedFeed()
        #expect(reader.install { _, _ in feed })
        feed.pieces = [[0x61, 0x0A, 0x62, 0x00, 0x0A]]
        guard case .line = try reader.nextIfReady() else { Issue.record("expected a line"); return }
        #expect(throws: InputFileError.self) { try reader.nextIfReady() }
    }
}

@Suite struct MapLineHintTests {
    @Test func mapLinesAreRecognised() {
        for line in ["137.72.95.0:foo:1:1", "  10.0.0.1:bar:-5:0.25 \r", "::1:fast:61:0", "10.0.0.1:x:9223372036854775807:1e3"] {
            #expect(withBytes(line) { CommandsFile.looksLikeMapLine($0) }, "\(line)")
        }
        for line in ["10.0.0.1:foo", "10.0.0.1:foo:bar", "10.0.0.1:foo:1:x", "10.0.0.1:foo:1:-1", "nope:foo:1:1", ":1:1", ""] {
            #expect(!withBytes(line) { CommandsFile.looksLikeMapLine($0) }, "\(line)")
        }
    }

    @Test func aMapLineGetsTheHint() {
        let hinted = withBytes("10.0.0.1:foo:7:0") { CommandsFile.parse(line: $0, number: 3, fileName: "m") }
        let expected = InputFileError(file: "m", line: 3, message:
            "expected ip:command, found a device map line (ip:command:response:wait): the map goes to asynccom-server --map")
        #expect(hinted == .malformed(expected))
        let plain = withBytes("10.0.0.1") { CommandsFile.parse(line: $0, number: 1, fileName: "m") }
        #expect(plain == .malformed(InputFileError(file: "m", line: 1, message: "expected ip:command: missing ':' between device and command")))
    }
}
