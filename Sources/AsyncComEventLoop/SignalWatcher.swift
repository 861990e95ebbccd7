import CLibevent

/// A signal delivered to this loop (only one loop per process should watch signals). Persistent: the callback
/// runs on the loop's thread once per delivery libevent observed. Cancelling restores the previous disposition
/// once no watcher of that signal is left.
public final class SignalWatcher: LoopCallbackTarget {
    private var event: OpaquePointer?
    private var callback: () -> Void

    public init(loop: EventLoop, signal: Int32, callback: @escaping () -> Void) {
        self.callback = callback
        super.init(loop: loop)
        guard let event = asynccom_evsignal_new(loop.base, signal, loopEventTrampoline, callbackArgument) else {
            preconditionFailure("event_new failed for signal \(signal)")
        }
        self.event = event
        _ = event_add(event, nil)
    }

    deinit { cancel() }

    override func fire(what: Int16) {
        let callback = self.callback  // `cancel()` inside it replaces the stored one
        callback()
    }

    public func cancel() {
        if let event { event_free(event) }
        event = nil
        callback = {}
    }
}
