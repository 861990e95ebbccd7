import CLibevent
import AsyncComCore

// CONTRACT STUB: the signatures below are the API the server and the client build on.
// Implementation: libevent's event_base and events, C callbacks as file-scope @convention(c) functions that
// receive an Unmanaged pointer to the Swift object.

/// One libevent `event_base`, created with EVENT_BASE_FLAG_PRECISE_TIMER. Confined to the thread that runs it:
/// no method may be called from another thread except `Notifier.notify()`.
public final class EventLoop {
    public let base: OpaquePointer

    public init() throws(SystemError) { fatalError("contract stub") }

    /// Runs until `stop()` or until no events are left.
    public func run() { fatalError("contract stub") }
    /// Makes `run()` return after the current callback (call on the loop's thread).
    public func stop() { fatalError("contract stub") }

    /// CLOCK_MONOTONIC in nanoseconds (the clock libevent's precise timers use).
    public static func monotonicNanos() -> UInt64 { fatalError("contract stub") }
}

/// A readiness watcher on a file descriptor (persistent; read and write armed separately).
public final class IOWatcher {
    /// `callback(readable, writable)` runs on the loop's thread.
    public init(loop: EventLoop, fd: Int32, callback: @escaping (_ readable: Bool, _ writable: Bool) -> Void) { fatalError("contract stub") }
    public var fd: Int32 { fatalError("contract stub") }
    public func setInterest(read: Bool, write: Bool) { fatalError("contract stub") }
    public var wantsRead: Bool { fatalError("contract stub") }
    public var wantsWrite: Bool { fatalError("contract stub") }
    /// Stops watching (idempotent). Does not close the fd.
    public func cancel() { fatalError("contract stub") }
}

/// A one-shot timer that can be re-armed.
public final class Timer {
    public init(loop: EventLoop, callback: @escaping () -> Void) { fatalError("contract stub") }
    /// (Re)arms the timer to fire `nanos` from now; replaces any earlier arming.
    public func schedule(afterNanos nanos: UInt64) { fatalError("contract stub") }
    /// (Re)arms for an absolute CLOCK_MONOTONIC deadline (fires at once if it has passed).
    public func schedule(atMonotonicNanos deadline: UInt64) { fatalError("contract stub") }
    public func cancel() { fatalError("contract stub") }
    public var isPending: Bool { fatalError("contract stub") }
}

/// Cross-thread wake-up via eventfd: `notify()` may be called from any thread; `callback` runs on the loop.
public final class Notifier: @unchecked Sendable {
    public init(loop: EventLoop, callback: @escaping () -> Void) throws(SystemError) { fatalError("contract stub") }
    public func notify() { fatalError("contract stub") }
    public func cancel() { fatalError("contract stub") }
}

/// A signal delivered to this loop (only one loop per process should watch signals).
public final class SignalWatcher {
    public init(loop: EventLoop, signal: Int32, callback: @escaping () -> Void) { fatalError("contract stub") }
    public func cancel() { fatalError("contract stub") }
}

public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let errno: Int32
    public init(_ operation: String, errno: Int32) { self.operation = operation; self.errno = errno }
    public var description: String { fatalError("contract stub") }  // "operation: strerror(errno)"
}

/// Non-blocking socket helpers (plain POSIX; every fd returned is O_NONBLOCK and close-on-exec).
public enum Socket {
    /// Binds and listens. TCP: SO_REUSEADDR, and SO_REUSEPORT when `reusePort`; resolves `host` (numeric or name).
    /// Unix: removes a stale socket file first. Returns the fd.
    public static func listen(_ endpoint: Endpoint, reusePort: Bool, backlog: Int32 = 1024) throws(SystemError) -> Int32 { fatalError("contract stub") }
    /// The bound address of a listening or connected socket, as an Endpoint (reads back port 0).
    public static func localEndpoint(fd: Int32) throws(SystemError) -> Endpoint { fatalError("contract stub") }
    /// accept4 non-blocking; nil on EAGAIN; throws on other errors (caller logs and continues on EMFILE etc.).
    public static func accept(fd: Int32) throws(SystemError) -> Int32? { fatalError("contract stub") }
    /// Starts a non-blocking connect; returns the fd (completion: writable, then `connectResult`).
    public static func connect(_ endpoint: Endpoint) throws(SystemError) -> Int32 { fatalError("contract stub") }
    /// SO_ERROR of a socket after a non-blocking connect: 0 when connected.
    public static func connectResult(fd: Int32) -> Int32 { fatalError("contract stub") }
    public static func setNoDelay(fd: Int32) { fatalError("contract stub") }
    /// read(2) into the buffer's writable space (grows it to at least `chunk`). Returns bytes read (0 = EOF),
    /// or nil on EAGAIN; throws on errors such as ECONNRESET.
    public static func read(fd: Int32, into buffer: ByteBuffer, chunk: Int) throws(SystemError) -> Int? { fatalError("contract stub") }
    /// write(2) from the buffer's readable bytes, consuming what was written. Returns bytes written (0 when it
    /// would block); throws on errors such as EPIPE.
    public static func write(fd: Int32, from buffer: ByteBuffer) throws(SystemError) -> Int { fatalError("contract stub") }
    public static func close(fd: Int32) { fatalError("contract stub") }
    /// shutdown(SHUT_WR): tell the peer we are done sending, keep reading.
    public static func shutdownWrite(fd: Int32) { fatalError("contract stub") }
}
