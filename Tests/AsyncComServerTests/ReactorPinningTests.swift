import AsyncComEventLoop
import AsyncComTestSupport
import Testing
@testable import AsyncComServer

/// Reactor threads are bound to CPUs of their own (`ReactorPinning`): two reactors left to the scheduler at times
/// shared one CPU, taking turns a tick (4 ms) apart while the other CPU ran the client.
@Suite("Server: reactor threads bound to CPUs")
struct ReactorPinningTests {
    @Test("auto pins only when there is one reactor per allowed CPU")
    func autoPinsOneReactorPerCPU() {
        #expect(ReactorPinning.auto.cpus(reactors: 2, allowed: [0, 1]) == [0, 1])
        // A cpuset or taskset that is not 0...n-1: the reactors take the CPUs the process has.
        #expect(ReactorPinning.auto.cpus(reactors: 3, allowed: [2, 5, 7]) == [2, 5, 7])
        // Fewer reactors than CPUs (several small servers on one host) or more: the scheduler places them.
        #expect(ReactorPinning.auto.cpus(reactors: 1, allowed: [0, 1]) == [nil])
        #expect(ReactorPinning.auto.cpus(reactors: 4, allowed: [0, 1]) == [nil, nil, nil, nil])
        // One CPU: nothing to choose.
        #expect(ReactorPinning.auto.cpus(reactors: 1, allowed: [3]) == [nil])
        // The kernel would not say which CPUs: leave it alone.
        #expect(ReactorPinning.auto.cpus(reactors: 2, allowed: []) == [nil, nil])
    }

    @Test("on pins round robin over the allowed CPUs; off never pins")
    func onAndOff() {
        #expect(ReactorPinning.on.cpus(reactors: 5, allowed: [1, 3]) == [1, 3, 1, 3, 1])
        #expect(ReactorPinning.on.cpus(reactors: 1, allowed: [0, 1]) == [0])
        #expect(ReactorPinning.on.cpus(reactors: 2, allowed: []) == [nil, nil])
        #expect(ReactorPinning.off.cpus(reactors: 2, allowed: [0, 1]) == [nil, nil])
        #expect(ReactorPinning.off.cpus(reactors: 0, allowed: [0, 1]) == [])
    }

    @Test("a started server's reactor threads run on one CPU each", .machineSlot(timeLimit: .minutes(1)))
    func startedReactorsAreBound() async throws {
        try await blocking {
            let allowed = EventLoop.threadCPUs()
            try #require(!allowed.isEmpty)
            let before = Set(processThreadIDs())
            let server = try TestServer(map: "10.0.0.1:w:5:1\n", reactors: 3) { $0.pinReactors = .on }
            defer { server.stop() }
            // Threads started since `before` and bound to a single allowed CPU: this server's three reactors
            // (other tests' servers can only add to them; unbound threads may run on every allowed CPU).
            let found = eventually {
                processThreadIDs().filter { tid in
                    guard !before.contains(tid) else { return false }
                    let cpus = EventLoop.threadCPUs(tid: tid)
                    return cpus.count == 1 && allowed.contains(cpus[0]) && (allowed.count == 1 || cpus != allowed)
                }.count >= 3
            }
            #expect(found, "reactor threads are not bound to a CPU each")
        }
    }

    @Test("the default reactor count is the number of CPUs the process may run on")
    func defaultReactorsFollowAffinity() {
        let allowed = EventLoop.threadCPUs()
        #expect(ServerConfiguration.defaultReactors == max(1, allowed.count))
    }
}
