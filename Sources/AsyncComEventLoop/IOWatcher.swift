import CLibevent

/// A readiness watcher on a file descriptor (persistent; read and write armed separately).
///
/// Owned by one object (a connection, a listener) that keeps it alive; dropping the last reference cancels it.
/// `cancel()` and release are allowed from inside any watcher's callback, including its own.
public final class IOWatcher: LoopCallbackTarget {
    public let fd: Int32
    private var readEvent: OpaquePointer?
    private var writeEvent: OpaquePointer?
    public private(set) var wantsRead = false
    public private(set) var wantsWrite = false
    fileprivate var callback: (_ readable: Bool, _ writable: Bool) -> Void

    /// `callback(readable, writable)` runs on the loop's thread. Nothing is watched until `setInterest`.
    public init(loop: EventLoop, fd: Int32, callback: @escaping (_ readable: Bool, _ writable: Bool) -> Void) {
        self.fd = fd
        self.callback = callback
        super.init(loop: loop)
        readEvent = event_new(loop.base, fd, Int16(EV_READ | EV_PERSIST), loopEventTrampoline, callbackArgument)
        writeEvent = event_new(loop.base, fd, Int16(EV_WRITE | EV_PERSIST), loopEventTrampoline, callbackArgument)
        precondition(readEvent != nil && writeEvent != nil, "event_new failed for fd \(fd)")
    }

    deinit { cancel() }

    override func fire(what: Int16) {
        // The callback may cancel the watcher, which replaces `callback`: call the one that fired.
        let callback = self.callback
        callback(Int32(what) & EV_READ != 0, Int32(what) & EV_WRITE != 0)
    }

    /// Arms or disarms each direction; costs a syscall only for a direction whose state changes.
    /// Does nothing after `cancel()`.
    public func setInterest(read: Bool, write: Bool) {
        guard let readEvent, let writeEvent else { return }
        if read != wantsRead {
            _ = read ? event_add(readEvent, nil) : event_del(readEvent)
            wantsRead = read
        }
        if write != wantsWrite {
            _ = write ? event_add(writeEvent, nil) : event_del(writeEvent)
            wantsWrite = write
        }
    }

    /// Whether `cancel()` has been called.
    public var isCancelled: Bool { readEvent == nil }

    /// Stops watching (idempotent). Does not close the fd: cancel first, then close, so that epoll never sees a
    /// stale fd number reused by a new connection. Releases the callback (and what it captures).
    public func cancel() {
        if let readEvent { event_free(readEvent) }
        if let writeEvent { event_free(writeEvent) }
        readEvent = nil
        writeEvent = nil
        wantsRead = false
        wantsWrite = false
        callback = { _, _ in }
    }
}
