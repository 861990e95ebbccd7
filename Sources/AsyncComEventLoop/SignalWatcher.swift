import CLibevent

private func signalTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    let watcher = Unmanaged<SignalWatcher>.fromOpaque(arg!).takeUnretainedValue()
    let callback = watcher.callback
    withExtendedLifetime(watcher) { callback() }
}

/// A signal delivered to this loop (only one loop per process should watch signals). Persistent: the callback
/// runs on the loop's thread once per delivery libevent observed. Cancelling restores the previous disposition
/// once no watcher of that signal is left.
public final class SignalWatcher {
    private let loop: EventLoop
    private var event: OpaquePointer?
    fileprivate var callback: () -> Void

    public init(loop: EventLoop, signal: Int32, callback: @escaping () -> Void) {
        self.loop = loop
        self.callback = callback
        let arg = Unmanaged.passUnretained(self).toOpaque()
        guard let event = asynccom_evsignal_new(loop.base, signal, signalTrampoline, arg) else {
            preconditionFailure("event_new failed for signal \(signal)")
        }
        self.event = event
        _ = event_add(event, nil)
    }

    deinit { cancel() }

    public func cancel() {
        if let event { event_free(event) }
        event = nil
        callback = {}
    }
}
