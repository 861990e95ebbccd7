import CLibevent

/// The one C callback of every libevent event this module creates (`IOWatcher`, `EventTimer`, `Notifier`,
/// `SignalWatcher`); `arg` is the unretained owner. HTTPListener's two evhttp callbacks have other C types and
/// go through `LoopCallbackTarget.dispatch` too.
func loopEventTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    let target = Unmanaged<LoopCallbackTarget>.fromOpaque(arg!).takeUnretainedValue()
    target.dispatch { target.fire(what: what) }
}

/// What a libevent callback's `arg` points at: its owner, which knows its loop.
///
/// `dispatch` runs the callback and then the loop's `afterCallback` hook, so that what every callback must do
/// at its end (free what it closed, flush what it queued) is written once, by the loop's owner.
public class LoopCallbackTarget {
    /// Keeps the base alive as long as the owner's events exist.
    let loop: EventLoop

    init(loop: EventLoop) { self.loop = loop }

    /// The `arg` to hand libevent for this owner.
    var callbackArgument: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// The event fired (`what`: libevent's EV_* bits). Overridden by each kind of owner.
    func fire(what: Int16) {}

    /// Runs `body`, then the loop's `afterCallback`. The callback may cancel its owner and drop the last reference
    /// to it: the owner and its loop stay alive until both have returned. libevent 2.1 does not touch an event
    /// after its callback returned, so freeing the event inside the callback (or the hook) is safe.
    @inline(__always)
    final func dispatch(_ body: () -> Void) {
        let loop = self.loop
        withExtendedLifetime(self) { body() }
        if let after = loop.afterCallback { after() }
    }
}
