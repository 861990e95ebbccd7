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
    /// One thread per CPU this process may run on (as many as the server's default reactors), each sleeping to
    /// absolute CLOCK_MONOTONIC deadlines every `periodNanos` for `seconds`; lateness over all wakes.
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
                    _ = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nil)
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
        let stolen = ProcessMetrics.stolenSeconds() - stolenBefore
        let sorted = collected.lateness.sorted()
        func ms(_ q: Double) -> Double { Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]) / 1e6 }
        var result = RunResult(wallSeconds: seconds, commandsPerSecond: Double(sorted.count) / seconds)
        result.lateness = (ms(0.5), ms(0.99), Double(sorted.last ?? 0) / 1e6)
        result.stolenMillis = stolen * 1000
        return result
    }
}
