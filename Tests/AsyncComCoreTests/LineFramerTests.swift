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
