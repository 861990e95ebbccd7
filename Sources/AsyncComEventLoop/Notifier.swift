import CLibevent
import Glibc

/// Cross-thread wake-up via eventfd: `notify()` may be called from any thread; `callback` runs on the loop.
///
/// Any number of `notify()` calls before the loop wakes up coalesce into one callback: the callback must look
/// at its own queue (or flag) for the work to do.
public final class Notifier: LoopCallbackTarget, @unchecked Sendable {
    // Everything except `fd` is touched only on the loop's thread. The fd stays open until deinit so that a
    // late `notify()` from another thread after `cancel()` never writes to a reused descriptor.
    private let fd: Int32
    private var event: OpaquePointer?
    private var callback: () -> Void

    public init(loop: EventLoop, callback: @escaping () -> Void) throws(SystemError) {
        let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else { throw SystemError.last("eventfd") }
        self.fd = fd
        self.callback = callback
        super.init(loop: loop)
        guard let event = event_new(loop.base, fd, Int16(EV_READ | EV_PERSIST), loopEventTrampoline, callbackArgument) else {
            throw SystemError("event_new(eventfd)", errno: ENOMEM)  // deinit closes the fd
        }
        self.event = event
        _ = event_add(event, nil)
    }

    deinit {
        cancel()
        Glibc.close(fd)
    }

    /// Wakes the loop (any thread; async-signal-safe). Never blocks: a full counter already means "wake up".
    public func notify() {
        var one: UInt64 = 1
        while Glibc.write(fd, &one, 8) < 0 && Glibc.errno == EINTR {}
    }

    /// Stops delivering callbacks (loop thread; idempotent).
    public func cancel() {
        if let event { event_free(event) }
        event = nil
        callback = {}
    }

    override func fire(what: Int16) {
        var count: UInt64 = 0
        var n: Int
        repeat { n = Glibc.read(fd, &count, 8) } while n < 0 && Glibc.errno == EINTR
        guard n == 8 else { return }  // spurious wake-up: nothing was notified
        let callback = self.callback
        callback()
    }
}
