import AsyncComEventLoop

/// The thread-safe link between a job's caller and its loop thread: cancellation, and backpressure from a
/// result stream's consumer. Wake-ups reach the loop through its `Notifier` (eventfd), the only libevent object
/// another thread may touch; it is detached under the lock before the loop tears down, so a late `cancel()` or
/// `consumed()` never touches a freed notifier.
final class JobControl: Sendable {
    private struct State {
        var cancelled = false
        var interrupted = false
        var finished = false
        var notifier: Notifier?
        var buffered = 0
        var engineWaiting = false
    }

    private let state = Locked(State())
    /// Results buffered for a stream consumer beyond which the engine stops pulling; nil: no stream.
    let streamHighWater: Int?

    init(streamHighWater: Int?) {
        self.streamHighWater = streamHighWater
    }

    func cancel() {
        state.withLock { s in
            s.cancelled = true
            s.notifier?.notify()
        }
    }

    var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// Any thread: asks the job to end early with a summary of what it has (see `JobInterruption`).
    func interrupt() {
        state.withLock { s in
            s.interrupted = true
            s.notifier?.notify()
        }
    }

    var isInterrupted: Bool { state.withLock { $0.interrupted } }

    /// Any thread: brings the loop back to look for work (e.g. input arrived); nothing once the job is over.
    func wake() {
        state.withLock { $0.notifier?.notify() }
    }

    /// Loop thread, at start. Returns false when the job was cancelled before it started.
    func attach(_ notifier: Notifier) -> Bool {
        state.withLock { s in
            s.notifier = notifier
            // An interruption that came before the loop was up is acted on at its first wake-up.
            if s.interrupted { notifier.notify() }
            return !s.cancelled
        }
    }

    /// Loop thread, at teardown.
    func detach() {
        state.withLock { s in
            s.notifier = nil
            s.finished = true
        }
    }

    /// The job has ended (its loop is gone).
    var isFinished: Bool { state.withLock { $0.finished } }

    /// Loop thread: whether the stream consumer keeps up well enough to pull more commands.
    func mayProduce() -> Bool {
        guard let high = streamHighWater else { return true }
        return state.withLock { s in
            if s.buffered >= high {
                s.engineWaiting = true
                return false
            }
            return true
        }
    }

    func produced(_ n: Int) {
        state.withLock { $0.buffered += n }
    }

    /// Consumer side: wakes the engine once the backlog has halved.
    func consumed(_ n: Int) {
        guard let high = streamHighWater else { return }
        state.withLock { s in
            s.buffered -= n
            if s.engineWaiting && s.buffered <= high / 2 {
                s.engineWaiting = false
                s.notifier?.notify()
            }
        }
    }
}

/// A job's outcome, awaited by any number of tasks.
final class JobCompletion: Sendable {
    private struct State {
        var result: Result<JobSummary, any Error>?
        var waiters: [CheckedContinuation<JobSummary, any Error>] = []
    }

    private let state = Locked(State())

    func complete(_ result: Result<JobSummary, any Error>) {
        let waiters = state.withLock { s -> [CheckedContinuation<JobSummary, any Error>] in
            guard s.result == nil else { return [] }
            s.result = result
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(with: result) }
    }

    func wait() async throws -> JobSummary {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<JobSummary, any Error>) in
            let ready = state.withLock { s -> Result<JobSummary, any Error>? in
                if let r = s.result { return r }
                s.waiters.append(c)
                return nil
            }
            if let ready { c.resume(with: ready) }
        }
    }
}
