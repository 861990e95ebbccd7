import Dispatch
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body`, test code that blocks (socket reads, waitpid polling, sleeps), on a thread of its own rather than
/// on one of the few threads of Swift's cooperative pool (one per core: two here). Swift Testing runs a
/// synchronous test on that pool, so a few long blocking tests in parallel starve every async test of the run
/// (its continuations wait for a free pool thread, and its timeouts fire). The task is the same, so `#expect`
/// and `#require` inside `body` report to the running test as usual.
///
/// How many such tests run at once is bounded by their suite's `.machineSlot(timeLimit:)` (not here: a test
/// waiting here for a turn would already be inside its time limit), so `blocking` insists on one.
public func blocking<T>(_ body: () throws -> T) async throws -> T {
    if !MachineSlotTrait.holdsSlot {
        Issue.record("blocking {} outside a .machineSlot(timeLimit:) suite or test: it would run unbounded")
    }
    let executor = DedicatedThreadExecutor()
    defer { executor.shutdown() }
    return try await withTaskExecutorPreference(executor) {
        try body()
    }
}

/// A task executor backed by one dedicated thread, stopped by `shutdown()`. A job that arrives after the thread
/// has stopped (a task a test started and left running) goes to Swift's global executor instead of being lost.
public final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    private struct Queue {
        var jobs: [UnownedJob] = []
        var stopped = false
    }
    private let queue = Mutex(Queue())
    /// One signal per job and one for the shutdown: each wait is followed by exactly one of them.
    private let events = DispatchSemaphore(value: 0)

    public init() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, dedicatedExecutorThreadMain, context)
        precondition(rc == 0, "pthread_create: \(rc)")
        pthread_detach(thread)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let queued = queue.withLock { q -> Bool in
            if q.stopped { return false }
            q.jobs.append(unowned)
            return true
        }
        if queued {
            events.signal()
        } else {
            globalConcurrentExecutor.enqueue(unowned)
        }
    }

    /// Lets the thread finish once its queued jobs have run.
    public func shutdown() {
        events.signal()
    }

    fileprivate func run() {
        while true {
            events.wait()
            let job = queue.withLock { q -> UnownedJob? in
                if q.jobs.isEmpty {
                    q.stopped = true  // the shutdown signal, with every job before it done
                    return nil
                }
                return q.jobs.removeFirst()
            }
            guard let job else { return }
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

private func dedicatedExecutorThreadMain(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let executor = Unmanaged<DedicatedThreadExecutor>.fromOpaque(arg!).takeRetainedValue()
    executor.run()
    return nil
}
