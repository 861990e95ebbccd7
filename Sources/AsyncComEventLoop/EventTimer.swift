import CLibevent
import Glibc

/// A one-shot timer that can be re-armed, also from inside its own callback.
///
/// Never fires early: the delay is rounded up to libevent's microsecond resolution (plus one microsecond, since
/// libevent truncates the current time to microseconds), and libevent's cached loop time is refreshed before
/// arming, so time spent in earlier callbacks of the same loop iteration is not counted as elapsed.
public final class EventTimer: LoopCallbackTarget {
    private var event: OpaquePointer!  // set once in init, freed in deinit
    private let callback: () -> Void

    /// `urgent`: when due, it runs before any other pending callback of the loop (reads included); see
    /// `EventLoop.init`.
    public init(loop: EventLoop, urgent: Bool = false, callback: @escaping () -> Void) {
        self.callback = callback
        super.init(loop: loop)
        event = event_new(loop.base, -1, 0, loopEventTrampoline, callbackArgument)
        precondition(event != nil, "event_new failed for a timer")
        if urgent { _ = event_priority_set(event, 0) }
    }

    deinit { event_free(event) }

    override func fire(what: Int16) { callback() }

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
