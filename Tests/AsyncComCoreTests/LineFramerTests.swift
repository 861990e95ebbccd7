import Testing
@testable import AsyncComCore

/// What `LineFramer.next` says, in a comparable form.
private enum Framed: Equatable {
    case line(String, Int)
    case incomplete
    case tooLong
}

private func frame(_ text: String, maxLine: Int) -> Framed {
    withBytes(text) { b in
        switch LineFramer.next(in: b, maxLine: maxLine) {
        case .line(let l, let consumed): return .line(String(decoding: l, as: UTF8.self), consumed)
        case .incomplete: return .incomplete
        case .tooLong: return .tooLong
        }
    }
}

@Suite struct LineFramerTests {
    /// Text wholly in memory splits as a stream would, and its last line needs no LF.
    @Test func linesOfTextInMemory() {
        func lines(_ text: String) -> [String] {
            withBytes(text) { b in
                var it = LineFramer.Lines(b)
                var out: [String] = []
                while let l = it.next() { out.append(String(decoding: l, as: UTF8.self)) }
                #expect(it.offset == b.count)
                return out
            }
        }
        #expect(lines("") == [])
        #expect(lines("\n") == [""])
        #expect(lines("a\nb") == ["a", "b"])
        #expect(lines("a\r\nb\r\n") == ["a", "b"])
        #expect(lines("a\rb\n\n") == ["a\rb", ""])
        #expect(lines("last\r") == ["last"])
        #expect(lines("x\r\r\n") == ["x\r"])
        // Starting part-way, as a source that pulls a few lines at a time does.
        withBytes("one\ntwo\nthree") { b in
            var it = LineFramer.Lines(b, from: 4)
            #expect(it.next().map { String(decoding: $0, as: UTF8.self) } == "two")
            #expect(it.offset == 8)
        }
    }

    /// The one rule for a file line's content: blanks (SP, HTAB) off both ends, CRs off its end.
    @Test func trimmedLineContent() {
        func trim(_ text: String) -> String { withBytes(text) { String(decoding: LineFramer.trimmed($0), as: UTF8.self) } }
        #expect(trim("") == "")
        #expect(trim(" \t ") == "")
        #expect(trim(" \ta:b \t") == "a:b")
        #expect(trim("a:b\r") == "a:b")
        #expect(trim("a:b \r\t\r") == "a:b")
        #expect(trim("a b") == "a b")
        #expect(trim("\ra:b") == "\ra:b")    // a CR is no blank: only a trailing one goes
    }

    /// `scanned` skips bytes already searched and changes no answer.
    @Test func scannedBytesAreNotSearchedAgain() {
        withBytes("abcdef\ngh") { b in
            guard case .line(let l, let consumed) = LineFramer.next(in: b, maxLine: 64, scanned: 3) else {
                Issue.record("no line"); return
            }
            #expect(String(decoding: l, as: UTF8.self) == "abcdef" && consumed == 7)
        }
        withBytes("abc") { b in
            guard case .incomplete = LineFramer.next(in: b, maxLine: 64, scanned: 3) else { Issue.record("not incomplete"); return }
        }
        withBytes("abcdef") { b in
            guard case .tooLong = LineFramer.next(in: b, maxLine: 4, scanned: 10) else { Issue.record("not too long"); return }
        }
    }

    @Test func lines() {
        #expect(frame("", maxLine: 10) == .incomplete)
        #expect(frame("\n", maxLine: 10) == .line("", 1))
        #expect(frame("\r\n", maxLine: 10) == .line("", 2))
        #expect(frame("abc\nrest", maxLine: 10) == .line("abc", 4))
        #expect(frame("abc\r\nrest", maxLine: 10) == .line("abc", 5))
        #expect(frame("a\rb\n", maxLine: 10) == .line("a\rb", 4))      // only a CR right before LF is dropped
        #expect(frame("ab\r\r\n", maxLine: 10) == .line("ab\r", 5))
        #expect(frame("abc", maxLine: 10) == .incomplete)
        #expect(frame("abc\r", maxLine: 10) == .incomplete)
    }

    @Test func maxLineCountsTheTerminator() {
        #expect(frame("123456789\n", maxLine: 10) == .line("123456789", 10))
        #expect(frame("12345678\r\n", maxLine: 10) == .line("12345678", 10))
        #expect(frame("123456789\r\n", maxLine: 10) == .tooLong)
        #expect(frame("1234567890\n", maxLine: 10) == .tooLong)
        #expect(frame("1234567890", maxLine: 10) == .tooLong)
        #expect(frame("123456789", maxLine: 10) == .incomplete)
        #expect(frame("123456789\n", maxLine: 9) == .tooLong)
        // An LF beyond maxLine is never looked at, however much is buffered.
        #expect(frame(String(repeating: "x", count: 100) + "\n", maxLine: 10) == .tooLong)
    }

    @Test func byteByByteRequestAcrossReads() throws {
        let m = try map("10.0.0.1:foo:3:0.5\n")
        let input = ByteBuffer(capacity: 16)
        let output = ByteBuffer()
        let wire = "PING x\r\nREQ 1 10.0.0.1:foo 10.0.0.2:foo\nreq 2 [::1]:foo\r\n\nQUIT\n"
        var outcomes: [ServerProtocol.Outcome] = []
        for byte in Array(wire.utf8) {
            input.append(byte: byte)
            while true {
                guard case .line(let line, let consumed) = LineFramer.next(in: input.readableView, maxLine: 64) else { break }
                outcomes.append(ServerProtocol.handle(line: line, map: m, maxItems: 8, reply: output))
                input.consume(consumed)
            }
        }
        #expect(input.isEmpty)
        #expect(outcomes == [.ping, .request(id: 1, waitNanos: 500_000_000, commands: 2, unknown: 1),
                             .request(id: 2, waitNanos: 0, commands: 1, unknown: 1), .empty, .quit])
        #expect(output.readableString == "PONG x\nRES 1 3 ?\nRES 2 ?\nBYE\n")
    }

    @Test func tooLongWhileStreaming() {
        let input = ByteBuffer()
        var sawTooLong = false
        for byte in Array(String(repeating: "y", count: 40).utf8) {
            input.append(byte: byte)
            switch LineFramer.next(in: input.readableView, maxLine: 32) {
            case .tooLong: sawTooLong = true
            case .incomplete: #expect(input.readableBytes < 32)
            case .line: Issue.record("no LF was sent")
            }
            if sawTooLong { break }
        }
        #expect(sawTooLong)
        #expect(input.readableBytes == 32)
    }
}
