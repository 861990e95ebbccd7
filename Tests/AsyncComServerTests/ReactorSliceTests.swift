import AsyncComEventLoop
import AsyncComTestSupport
import Testing
@testable import AsyncComServer

/// Reactor threads ask the kernel for a short CPU slice (`Reactor.schedulerSliceNanos`): with the client on the
/// same cores, a reactor at the default slice waited milliseconds for a CPU while its replies fell due.
@Suite("Server: reactor threads' CPU slice", .machineSlot(timeLimit: .minutes(1)))
struct ReactorSliceTests {
    @Test("every reactor thread of a started server has asked for the short slice")
    func reactorsAskForTheShortSlice() async throws {
        try await blocking {
            // Kernels before Linux 6.12 accept the request and ignore it: nothing to see there.
            guard Self.kernelKeepsSlices() else { return }
            let before = Set(processThreadIDs())
            let server = try TestServer(map: "10.0.0.1:w:5:1\n", reactors: 2)
            defer { server.stop() }
            // Threads started since `before` with the reactor's slice: this server's two reactors (other tests'
            // servers can only add to the count, and without the request there would be none at all).
            let found = eventually {
                processThreadIDs().filter { !before.contains($0) && EventLoop.threadSlice(tid: $0) == Reactor.schedulerSliceNanos }
                    .count >= 2
            }
            #expect(found, "reactor threads run at the kernel's default slice")
        }
    }

    /// Whether this kernel keeps a requested slice (tried on the calling thread, then put back to the default).
    private static func kernelKeepsSlices() -> Bool {
        guard EventLoop.requestThreadSlice(nanos: Reactor.schedulerSliceNanos) == nil else { return false }
        defer { EventLoop.requestThreadSlice(nanos: 0) }
        return EventLoop.threadSlice() == Reactor.schedulerSliceNanos
    }
}
