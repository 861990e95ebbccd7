import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The `hostfloor` scenario: how late this machine wakes bare threads that sleep to deadlines with nothing else to
/// do. A reply is a timer firing on a reactor thread, so no server answers closer to its due time than its host
/// wakes such a thread: this is the floor under the lateness figures of the other scenarios. On a virtual machine
/// whose host gives an idle vCPU's core away (the guest halts when idle; waking it waits for the host's scheduler),
/// it shows together with the CPU the host stole.
enum HostFloor {
    /// One thread per active CPU, each sleeping to absolute CLOCK_MONOTONIC deadlines every `periodNanos` for
    /// `seconds`; lateness over all wakes. The deadlines are absolute, so a stall of D ms makes about D / period
    /// consecutive wakes late, as a stalled reactor makes every reply due meanwhile late.
    static func run(seconds: Double, periodNanos: Int) -> RunResult {
        let threads = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let wakes = max(1, Int(seconds * 1e9) / periodNanos)
        final class Collected: @unchecked Sendable {
            let lock = NSLock()
            var lateness: [Int64] = []
        }
        let collected = Collected()
        let done = DispatchGroup()
        let stolenBefore = ProcessMetrics.stolenSeconds()
        let start = Runner.monotonicSeconds()
        for _ in 0..<threads {
            done.enter()
            let thread = Thread {
                var late = [Int64](repeating: 0, count: wakes)
                var deadline = timespec()
                clock_gettime(CLOCK_MONOTONIC, &deadline)
                var now = timespec()
                for i in 0..<wakes {
                    deadline.tv_nsec += periodNanos
                    while deadline.tv_nsec >= 1_000_000_000 {
                        deadline.tv_nsec -= 1_000_000_000
                        deadline.tv_sec += 1
                    }
                    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nil) == EINTR {}
                    clock_gettime(CLOCK_MONOTONIC, &now)
                    late[i] = (Int64(now.tv_sec) - Int64(deadline.tv_sec)) * 1_000_000_000 + Int64(now.tv_nsec - deadline.tv_nsec)
                }
                collected.lock.lock()
                collected.lateness += late
                collected.lock.unlock()
                done.leave()
            }
            thread.start()
        }
        done.wait()
        let wall = Runner.monotonicSeconds() - start
        let stolen = ProcessMetrics.stolenSeconds() - stolenBefore
        let sorted = collected.lateness.sorted()
        var result = RunResult(wallSeconds: wall)
        result.lateness = (Runner.quantileMillis(sorted, 0.5), Runner.quantileMillis(sorted, 0.99), Runner.quantileMillis(sorted, 1))
        result.stolenMillis = stolen * 1000
        return result
    }
}
