import CLibevent
#if canImport(Glibc)
import Glibc
#endif

private func timerTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    let timer = Unmanaged<Timer>.fromOpaque(arg!).takeUnretainedValue()
    let callback = timer.callback
    withExtendedLifetime(timer) { callback() }
}

/// A one-shot timer that can be re-armed, also from inside its own callback.
///
/// Never fires early: the delay is rounded up to libevent's microsecond resolution (plus one microsecond, since
/// libevent truncates the current time to microseconds), and libevent's cached loop time is refreshed before
/// arming, so time spent in earlier callbacks of the same loop iteration is not counted as elapsed.
public final class Timer {
    private let loop: EventLoop
    private var event: OpaquePointer!  // set once in init, freed in deinit
    fileprivate var callback: () -> Void

    /// `urgent`: when due, it runs before any other pending callback of the loop (reads included); see
    /// `EventLoop.init`.
    public init(loop: EventLoop, urgent: Bool = false, callback: @escaping () -> Void) {
        self.loop = loop
        self.callback = callback
        let arg = Unmanaged.passUnretained(self).toOpaque()
        event = event_new(loop.base, -1, 0, timerTrampoline, arg)
        precondition(event != nil, "event_new failed for a timer")
        if urgent { _ = event_priority_set(event, 0) }
    }

    deinit { event_free(event) }

    /// (Re)arms the timer to fire `nanos` from now; replaces any earlier arming.
    public func schedule(afterNanos nanos: UInt64) {
        _ = event_base_update_cache_time(loop.base)
        arm(micros: nanos / 1000 + (nanos % 1000 == 0 ? 0 : 1) + 1)
    }

    /// (Re)arms for an absolute CLOCK_MONOTONIC deadline (fires at once if it has passed).
    public func schedule(atMonotonicNanos deadline: UInt64) {
        // Read our clock before libevent's: libevent's "now" is then later, so its deadline is not earlier.
        let now = EventLoop.monotonicNanos()
        _ = event_base_update_cache_time(loop.base)
        if deadline <= now {
            arm(micros: 0)
        } else {
            let nanos = deadline - now
            arm(micros: nanos / 1000 + (nanos % 1000 == 0 ? 0 : 1) + 1)
        }
    }

    private func arm(micros: UInt64) {
        var tv = timeval(tv_sec: Int(micros / 1_000_000), tv_usec: Int(micros % 1_000_000))
        _ = event_add(event, &tv)
    }

    public func cancel() {
        _ = event_del(event)
    }

    public var isPending: Bool {
        event_pending(event, Int16(EV_TIMEOUT), nil) != 0
    }
}
