import CLibevent
import AsyncComCore
#if canImport(Glibc)
import Glibc
#endif

/// One libevent `event_base`, created with EVENT_BASE_FLAG_PRECISE_TIMER. Confined to the thread that runs it:
/// no method may be called from another thread except `Notifier.notify()`.
///
/// Watchers, timers, notifiers and signal watchers keep their loop alive, so the base is freed only after every
/// libevent object created on it has been freed. Threading support (evthread_use_pthreads) is deliberately not
/// enabled: a base never crosses threads, and its lock would cost every event_add/event_del.
public final class EventLoop {
    public let base: OpaquePointer

    public init() throws(SystemError) {
        guard let config = event_config_new() else { throw SystemError("event_config_new", errno: ENOMEM) }
        defer { event_config_free(config) }
        // CLOCK_MONOTONIC instead of CLOCK_MONOTONIC_COARSE (4 ms granularity), and timerfd on epoll: the
        // modelled waits are in milliseconds and must not be rounded to the kernel tick.
        _ = event_config_set_flag(config, Int32(bitPattern: EVENT_BASE_FLAG_PRECISE_TIMER.rawValue))
        guard let base = event_base_new_with_config(config) else {
            throw SystemError("event_base_new_with_config", errno: errno == 0 ? ENOMEM : errno)
        }
        self.base = base
        // Two priorities: 0 for urgent timers (`EventTimer(urgent:)`), 1 (libevent's default, the middle) for the
        // rest.
        // libevent runs only the most urgent active events in a loop iteration, so a due urgent timer is never
        // queued behind a round of reads.
        _ = event_base_priority_init(base, 2)
    }

    deinit { event_base_free(base) }

    /// Runs on the loop's thread after every callback of this loop's events (watchers, timers, notifiers,
    /// signal watchers, HTTP listeners), like Redis's `beforeSleep` but after each callback: the one place for
    /// what every callback must do at its end. Set by the loop's owner (the server's reactor frees the
    /// connections its callbacks closed, the client's engine settles); nil for none.
    public var afterCallback: (() -> Void)?

    /// Runs until `stop()` or until no events are left.
    public func run() {
        _ = event_base_loop(base, 0)
    }

    /// Runs one iteration: waits for events (unless `nonBlocking`), runs their callbacks, returns.
    /// Returns false when no events are registered at all.
    @discardableResult
    public func runOnce(nonBlocking: Bool = false) -> Bool {
        let flags = EVLOOP_ONCE | (nonBlocking ? EVLOOP_NONBLOCK : 0)
        return event_base_loop(base, flags) == 0
    }

    /// Makes `run()` return after the current callback (call on the loop's thread). A `stop()` made while the
    /// loop is not running is forgotten by the next `run()`.
    public func stop() {
        _ = event_base_loopbreak(base)
    }

    /// Asks the kernel to give the calling thread CPU slices of `nanos` (Linux 6.12+ EEVDF custom slice; 100 µs to
    /// 100 ms): a thread with a short slice waits less for a CPU when other threads compete for it. Returns nil on
    /// success, else why not (older kernels accept and ignore the request: `threadSlice` then says 0).
    @discardableResult
    public static func requestThreadSlice(nanos: UInt64) -> SystemError? {
        let error = asynccom_set_thread_slice(nanos)
        return error == 0 ? nil : SystemError("sched_setattr", errno: error)
    }

    /// Thread `tid`'s (0: the calling thread's) requested slice in nanoseconds; 0 for the kernel's default.
    public static func threadSlice(tid: Int32 = 0) -> UInt64 { asynccom_thread_slice(tid) }

    /// The CPUs thread `tid` (0: the calling thread) may run on, ascending (its affinity mask: `taskset`, a
    /// cgroup's cpuset); empty if the kernel would not say.
    public static func threadCPUs(tid: Int32 = 0) -> [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let n = asynccom_thread_cpus(tid, &cpus, Int32(cpus.count))
        return n > 0 ? cpus[0..<Int(n)].map(Int.init) : []
    }

    /// Binds the calling thread to `cpu` alone. Returns nil on success, else why not.
    @discardableResult
    public static func pinThread(toCPU cpu: Int) -> SystemError? {
        let error = asynccom_pin_thread(Int32(cpu))
        return error == 0 ? nil : SystemError("sched_setaffinity", errno: error)
    }

    /// CLOCK_MONOTONIC in nanoseconds (the clock libevent's precise timers use).
    public static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// CLOCK_REALTIME in nanoseconds: the clock of the kernel's receive stamps (`Socket.readStamped`).
    public static func realtimeNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }
}
