import Glibc
import AsyncComCore
import DequeModule
import AsyncComEventLoop

/// Reads a pipe, FIFO or terminal on a thread of its own and hands the bytes to the engine's loop thread, so a
/// writer that pauses never stops the loop (replies keep being read, timers keep meaning what they say).
///
/// The hand-off is bounded: at most `maxChunks` chunks of up to `chunkSize` bytes wait for the loop; beyond
/// that the reader thread waits, and the writer with it (the pipe fills up), as it would if the loop read the
/// pipe itself. When the loop found nothing (`take` said `.notYet`), the next bytes or the end wake it through
/// `wake`. The thread polls with a timeout, so `stop()` ends it soon even when the writer never writes again.
final class InputFeed: LineFeed, @unchecked Sendable {
    static let chunkSize = 256 << 10
    static let maxChunks = 8
    /// How often a reader thread that waits for input checks whether it was stopped.
    static let stopCheckMillis: Int32 = 200

    private let fd: Int32
    private let ownsDescriptor: Bool
    private let wake: @Sendable () -> Void

    // Guarded by `mutex`; `ready` signals both "bytes or the end arrived" and "room in the queue or stopped".
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let ready = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var chunks = Deque<[UInt8]>()
    /// Bytes of `chunks.first` already taken.
    private var headOffset = 0
    private var ended = false
    private var readError: Int32 = 0
    private var consumerWaiting = false
    private var stopped = false

    /// Starts the reader thread on `fd`; nil when no thread can be started (the caller then reads `fd` itself).
    init?(fd: Int32, ownsDescriptor: Bool, wake: @escaping @Sendable () -> Void) {
        self.fd = fd
        self.ownsDescriptor = ownsDescriptor
        self.wake = wake
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        ready.initialize(to: pthread_cond_t())
        pthread_cond_init(ready, nil)
        do {
            // The thread holds the feed until it ends.
            try LoopThread.spawn { [self] in readLoop() }
        } catch {
            return nil
        }
    }

    deinit {
        pthread_cond_destroy(ready)
        ready.deinitialize(count: 1)
        ready.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    private func withLock<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    // MARK: the reader thread

    private func readLoop() {
        defer { if ownsDescriptor { close(fd) } }
        while true {
            let go = withLock { () -> Bool in
                while chunks.count >= InputFeed.maxChunks && !stopped { pthread_cond_wait(ready, mutex) }
                return !stopped
            }
            guard go else { return }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let polled = poll(&pfd, 1, InputFeed.stopCheckMillis)
            if polled == 0 || (polled < 0 && errno == EINTR) { continue }
            var chunk = [UInt8](repeating: 0, count: InputFeed.chunkSize)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            let error = n < 0 ? errno : 0
            if n > 0 { chunk.removeLast(chunk.count - n) }
            let wakeConsumer = withLock { () -> Bool in
                if n > 0 {
                    chunks.append(chunk)
                } else {
                    ended = true
                    readError = error
                }
                pthread_cond_broadcast(ready)
                defer { consumerWaiting = false }
                return consumerWaiting
            }
            if wakeConsumer { wake() }
            if n <= 0 { return }
        }
    }

    // MARK: the consumer (the loop thread)

    func take(into destination: UnsafeMutableRawPointer, count: Int, wait: Bool) -> LineFeedResult {
        withLock {
            while chunks.isEmpty && !ended {
                guard wait else {
                    consumerWaiting = true
                    return .notYet
                }
                pthread_cond_wait(ready, mutex)
            }
            var copied = 0
            while copied < count, let head = chunks.first {
                let n = min(count - copied, head.count - headOffset)
                head.withUnsafeBytes { (destination + copied).copyMemory(from: $0.baseAddress! + headOffset, byteCount: n) }
                copied += n
                headOffset += n
                if headOffset == head.count {
                    _ = chunks.popFirst()
                    headOffset = 0
                    pthread_cond_broadcast(ready)  // room for the reader thread
                }
            }
            if copied > 0 { return .bytes(copied) }
            return readError != 0 ? .failed(readError) : .end
        }
    }

    func stop() {
        withLock {
            stopped = true
            pthread_cond_broadcast(ready)
        }
    }
}
