import AsyncComTestSupport
import Testing

/// Replies that fall due while a reactor handles a long read go out in the middle of it, not after it: one read
/// of batch-1 requests (64 KiB, ~2,000 requests) took milliseconds to handle while due replies waited.
@Suite("Server: replies due during a long read", .machineSlot(timeLimit: .minutes(1)))
struct DueDuringReadTests {
    @Test("a reply due 1 ms after arriving overtakes the zero-wait replies of the rest of its read")
    func dueReplyGoesOutMidRead() async throws {
        try await blocking {
            let server = try TestServer(map: "10.0.0.1:slow:7:0.001\n10.0.0.2:z:3:0\n", reactors: 1)
            defer { server.stop() }
            let client = try server.client()
            // One write of ~50 KB, under one read of the reactor: REQ 0 is due 1 ms after it arrived, while the
            // reactor still has most of the 2,500 zero-wait requests behind it to handle (a debug build takes
            // several milliseconds for them).
            let count = 2_500
            var text = "REQ 0 10.0.0.1:slow\n"
            for i in 1...count { text += "REQ \(i) 10.0.0.2:z\n" }
            try client.send(text)
            var position: Int?
            for k in 0...count where try client.line() == "RES 0 7" { position = k }
            let at = try #require(position, "no reply to REQ 0")
            // Handled after the read, it would come after the replies of every request in it (all of them, or
            // all that one read took).
            #expect(at < count - 100, "REQ 0's reply came after \(at) of the \(count) zero-wait replies")
        }
    }
}
