#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by a pthread mutex, for state shared between threads off the hot path (start/stop handshakes,
/// job control).
///
/// Why not `Synchronization.Mutex`: on Linux it is a futex driven from the Swift runtime, which ThreadSanitizer
/// cannot see, so every access it protects is reported as a race and `swift test --sanitize=thread` cannot
/// pass. TSan understands pthread mutexes, so real races stay visible and correct locking stays quiet.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    @inline(__always)
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
