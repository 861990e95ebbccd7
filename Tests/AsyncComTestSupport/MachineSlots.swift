import Foundation
import Synchronization
import Testing

/// For a suite (or test) that runs real servers, processes, or big inputs: each of its test cases first takes
/// its share of the machine (`weight` of `machineSlotCapacity` units), waiting without holding a thread, and
/// only then starts its time limit.
///
/// Why: the parallel suite starts every test at once. Dozens of real servers and clients side by side on a
/// 2-core machine turn a test's generous internal timeouts (10 s for a reply) into flakes, so these tests run a
/// few at a time. Swift Testing's own `.timeLimit` would already run while a test waits for its turn (it wraps
/// everything a test's traits do), so a queue of long tests timed out the ones behind it (issue 10: 9 time-limit
/// failures at load 12). Use this trait instead of `.timeLimit` on such suites.
///
/// Most of these tests wait on timers, sockets, and child processes: they take one unit. A test that keeps a
/// core busy for seconds (a million commands, megabytes of replies) says `cpuBound: true` and takes half the
/// machine, so at most two run at once. A test's own trait replaces its suite's.
public struct MachineSlotTrait: SuiteTrait, TestTrait, TestScoping {
    public let timeLimit: Duration
    public let weight: Int
    /// Tells apart a suite's trait from a test's (both are in the test's traits).
    let id: Int

    /// Applies to every test in the suite, nested suites included.
    public var isRecursive: Bool { true }

    /// One share per test case (each argument of a parameterized test is one), never one for a whole suite; of
    /// the traits a test has (its own, its suites'), the heaviest, then the latest made, provides it.
    public func scopeProvider(for test: Test, testCase: Test.Case?) -> MachineSlotTrait? {
        guard testCase != nil else { return nil }
        let chosen = test.traits.compactMap { $0 as? MachineSlotTrait }.max { ($0.weight, $0.id) < ($1.weight, $1.id) }
        return chosen?.id == id ? self : nil
    }

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        // The test's own async code runs on a thread of its own: Swift concurrency's pool (one thread per core)
        // is busy with the CPU-bound unit tests at the start of a run, and a slotted test that waited for a pool
        // thread to resume (after its slot, a sleep, a reply) held its share meanwhile (a run's first server
        // tests took 5-14 s instead of 0.3 s).
        let executor = DedicatedThreadExecutor()
        defer { executor.shutdown() }
        try await MachineSlotTrait.$executor.withValue(executor) {
            try await withTaskExecutorPreference(executor) {
                let asked = monotonicSeconds()
                await machineSlots.acquire(weight)
                defer { machineSlots.release(weight) }
                let started = monotonicSeconds()
                defer {
                    if logMachineSlots {
                        print(String(format: "machine slot: waited %.2f s, ran %.2f s, weight %d: %@",
                                     started - asked, monotonicSeconds() - started, weight, test.name))
                    }
                }
                try await MachineSlotTrait.$holdsSlot.withValue(true) {
                    try await withTimeLimit(timeLimit, at: test.sourceLocation, function)
                }
            }
        }
    }

    /// Whether the current task runs inside a slot (checked by `blocking {}`).
    @TaskLocal public static var holdsSlot = false
    /// The current slotted test's own thread (for `testTask`).
    @TaskLocal static var executor: DedicatedThreadExecutor?
}

extension Trait where Self == MachineSlotTrait {
    /// Takes a share of the machine for each test case; `timeLimit` starts once it is held.
    public static func machineSlot(timeLimit: TimeLimitTrait.Duration, cpuBound: Bool = false) -> Self {
        let limit: TimeLimitTrait = .timeLimit(timeLimit)  // minutes, as Swift Testing's own
        return MachineSlotTrait(timeLimit: limit.timeLimit, weight: cpuBound ? machineSlotCapacity / 2 : 1,
                                id: nextMachineSlotID.add(1, ordering: .relaxed).newValue)
    }
}

/// Units of the machine that slotted test cases share: eight waiting tests, or two busy ones, or one busy one
/// and four waiting ones at a time (two cores).
public let machineSlotCapacity = 8

let machineSlots = AsyncSemaphore(value: machineSlotCapacity)
private let nextMachineSlotID = Atomic<Int>(0)
/// `ASYNCCOM_SLOT_LOG=1 swift test` prints how long each slotted test case waited for its share and ran.
private let logMachineSlots = getenv("ASYNCCOM_SLOT_LOG") != nil

/// Like `Task { }`, but on the current slotted test's own thread: an unstructured task goes to Swift concurrency's
/// shared pool (two threads here), which the CPU-bound unit tests keep busy at the start of a run (a job started
/// with `Task { }` did not begin for 30 s at load 15).
public func testTask<T: Sendable>(_ body: sending @escaping () async throws -> T) -> Task<T, any Error> {
    Task(executorPreference: MachineSlotTrait.executor, operation: body)
}

/// Runs `body`, recording a time-limit issue if it takes longer than `limit`. Like Swift Testing's `.timeLimit`,
/// the body is cancelled then and still awaited (code that blocks a thread cannot be stopped from outside).
func withTimeLimit(_ limit: Duration, at sourceLocation: SourceLocation,
                   _ body: @Sendable () async throws -> Void) async throws {
    try await withoutActuallyEscaping(body) { body in
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await body()
                return true
            }
            // On the test's own thread too (not the shared pool: finishing a cancelled sleep there waited for the
            // CPU-bound unit tests). Code that blocks runs in `blocking {}`, so this thread is free to report.
            group.addTask {
                try await Task.sleep(for: limit)
                Issue.record("Time limit exceeded: \(limit) after the test got its machine slot",
                             sourceLocation: sourceLocation)
                return false
            }
            defer { group.cancelAll() }
            // The body's own failure, if it comes first, is rethrown (and the sleep cancelled by the defer).
            if try await group.next() == true { return }
            group.cancelAll()
            while let finished = try await group.next(), !finished {}
        }
    }
}

/// A counting semaphore whose waiters suspend (no thread is held while waiting), first come first served: a
/// heavy waiter at the head is not overtaken by light ones, so it cannot starve.
final class AsyncSemaphore: Sendable {
    private struct State {
        var available: Int
        var waiters: [(units: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }
    private let state: Mutex<State>

    init(value: Int) { state = Mutex(State(available: value)) }

    func acquire(_ units: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { s -> Bool in
                if s.waiters.isEmpty && s.available >= units {
                    s.available -= units
                    return true
                }
                s.waiters.append((units, continuation))
                return false
            }
            if granted { continuation.resume() }
        }
    }

    func release(_ units: Int) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.available += units
            var ready: [CheckedContinuation<Void, Never>] = []
            while let first = s.waiters.first, first.units <= s.available {
                s.available -= first.units
                ready.append(s.waiters.removeFirst().continuation)
            }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }
}
