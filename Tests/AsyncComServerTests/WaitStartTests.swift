import AsyncComCore
import AsyncComServer
import AsyncComEventLoop
import AsyncComTestSupport
import Testing

/// A request's wait starts when its bytes reached the server (the kernel's receive stamp), not when a reactor
/// got round to reading them.
@Suite("Server: where a request's wait starts", .machineSlot(timeLimit: .minutes(1)))
struct WaitStartTests {
    @Test("a request left in the kernel while its connection is paused is due its wait after it arrived")
    func waitStartsOnArrival() async throws {
        try await blocking {
            let stamping = try ReceiveStampsOn()
            defer { stamping.close() }
            let server = try TestServer(map: "10.0.0.1:w:5:1\n", reactors: 1) { $0.maxInflightCommands = 1 }
            let client = try server.client()
            let observer = try server.client()
            // Two commands in flight: over the limit of one, so the server stops reading this connection.
            try client.send("REQ 1 10.0.0.1:w 10.0.0.1:w\n")
            let deadline = EventLoop.monotonicNanos() + 10_000_000_000
            while try observer.stats()["inflight_commands"] != 2 {
                #expect(EventLoop.monotonicNanos() < deadline, "REQ 1 never went in flight")
                if EventLoop.monotonicNanos() >= deadline { return }
            }
            // This one waits in the kernel until REQ 1 is answered, about a second from now.
            let sent = EventLoop.monotonicNanos()
            try client.send("REQ 2 10.0.0.1:w\n")
            #expect(try client.line() == "RES 1 5 5")
            #expect(try client.line() == "RES 2 5")
            let latency = EventLoop.monotonicNanos() - sent
            // Due 1 s after it arrived: never sooner; read only when REQ 1 was answered (~1 s later), so a wait
            // started at the read would end ~2 s after sending.
            #expect(latency >= 1_000_000_000)
            #expect(latency < 1_700_000_000, "answered \(latency / 1_000_000) ms after sending: its wait started when it was read")
            #expect(try observer.stats()["late_queued_max_us"] ?? 0 >= 500_000)
        }
    }
}

/// Keeps the kernel's receive stamping on for as long as it lives. The kernel turns stamping on asynchronously
/// (a work item flips a static key) when the first socket on the host asks for it: until then, segments arrive
/// unstamped. This holds a stamped socket of its own, and returns once one of its segments was stamped.
struct ReceiveStampsOn {
    let fds: (Int32, Int32)

    init() throws {
        let listener = try Socket.listen(.tcp(host: "127.0.0.1", port: 0), reusePort: false)
        defer { Socket.close(fd: listener) }
        let client = try Socket.connect(try Socket.localEndpoint(fd: listener))
        let deadline = EventLoop.monotonicNanos() + 10_000_000_000
        var accepted: Int32?
        while accepted == nil && EventLoop.monotonicNanos() < deadline { accepted = try Socket.accept(fd: listener) }
        guard let server = accepted else { throw TestFailure("accept timed out") }
        fds = (client, server)
        Socket.enableReceiveTimestamps(fd: server)
        let out = ByteBuffer(), input = ByteBuffer()
        while EventLoop.monotonicNanos() < deadline {
            out.append("x")
            while !out.isEmpty { _ = try Socket.write(fd: client, from: out) }
            var got: (count: Int, stamp: Int64)?
            while got == nil && EventLoop.monotonicNanos() < deadline { got = try Socket.readStamped(fd: server, into: input, chunk: 64) }
            if (got?.stamp ?? 0) != 0 { return }
        }
        throw TestFailure("the kernel did not stamp received segments within 10 s")
    }

    func close() {
        Socket.close(fd: fds.0)
        Socket.close(fd: fds.1)
    }
}
