import AsyncComCore
import AsyncComEventLoop
import Logging

/// The pipelining client engine as a library.
///
/// Each job (`run` or `results`) gets its own libevent loop on a dedicated thread: connecting, pipelining,
/// re-sending and reading replies all happen there, and the command source is pulled there, lazily, only when a
/// window has room. Callbacks (`onResult`, `onProgress`, a source's malformed-line callback) run on that thread,
/// one at a time and in order: keep them short, and never block in them (the loop stops while they run).
///
/// ```swift
/// let client = AsyncComClient(configuration: ClientConfiguration(servers: [.tcp(host: "127.0.0.1", port: 5557)]))
/// let summary = try await client.run(source: try FileCommandSource(path: "commands.txt"))
/// print(summary.sum, summary.ok, summary.unknown, summary.failed)
/// ```
///
/// A client object holds only configuration; it may run several jobs, one after another or at once.
public final class AsyncComClient: Sendable {
    public let configuration: ClientConfiguration
    public let logger: Logger

    public init(configuration: ClientConfiguration = ClientConfiguration(), logger: Logger = Logger(label: "asynccom.client")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs one job to completion and returns its summary.
    ///
    /// - Parameters:
    ///   - source: pulled on the engine's thread until it returns nil.
    ///   - onResult: called once per well-formed command, on the engine's thread; in input order when
    ///     `configuration.ordered`, else as replies arrive. Pass nil when only the summary matters: the engine
    ///     then keeps no per-command state and runs fastest.
    ///   - onAnswer: called once per answered request (a batch of commands), on the engine's thread, as replies
    ///     arrive: each command's sequence and outcome and the request's latency, without a `CommandResult`
    ///     per command. For metrics and benchmarks that must not slow the reply path down. Failed commands have
    ///     no answer (see `onResult` and the summary).
    ///   - onProgress: called about four times a second on the engine's thread.
    ///   - interruption: `interrupt()` on it ends the job early and gracefully: the summary covers what was
    ///     answered until then, with `interrupted` set and the commands left without a result in `notAnswered`.
    /// - Returns: the summary; commands that failed are counted in it (`failed`), they do not throw.
    /// - Throws: `ClientError.invalidConfiguration`, `ClientError.source` when the source throws (the job stops at
    ///   once), `ClientError.startup`, or `CancellationError` when the task is cancelled (the job stops at once).
    public func run(
        source: sending some CommandSource,
        onResult: sending ((CommandResult) -> Void)? = nil,
        onAnswer: sending ((AnsweredRequest) -> Void)? = nil,
        onProgress: sending ((JobProgress) -> Void)? = nil,
        interruption: JobInterruption? = nil
    ) async throws -> JobSummary {
        try configuration.validate()
        let control = JobControl(streamHighWater: nil)
        interruption?.register(control)
        let payload = UncheckedTransfer(JobPayload(
            source: source, onResult: onResult, onAnswer: onAnswer, onFlush: nil, onProgress: onProgress))
        let configuration = self.configuration
        let logger = self.logger
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JobSummary, any Error>) in
                let done = UncheckedTransfer(continuation)
                do {
                    try Engine.launch(configuration: configuration, logger: logger, payload: payload, control: control) { result in
                        done.value.resume(with: result)
                    }
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            control.cancel()
        }
    }

    /// Starts a job and returns its results as an `AsyncSequence` (in input order when
    /// `configuration.ordered`); `ResultStream.summary()` awaits the job's summary.
    ///
    /// The engine pauses pulling commands while the consumer lags (about 64k undelivered results), so memory
    /// stays bounded: iterate the stream to the end, or call `cancel()`. Leaving the iteration early (`break`,
    /// a thrown error, a cancelled task) cancels the job: `summary()` then throws `CancellationError`.
    public func results(source: sending some CommandSource, onProgress: sending ((JobProgress) -> Void)? = nil) -> ResultStream {
        let completion = JobCompletion()
        do {
            try configuration.validate()
        } catch {
            completion.complete(.failure(error))
            return ResultStream(chunks: AsyncStream { $0.finish() }, control: JobControl(streamHighWater: nil), completion: completion)
        }
        let control = JobControl(streamHighWater: ResultStream.highWater)
        let (chunks, continuation) = AsyncStream.makeStream(of: [CommandResult].self, bufferingPolicy: .unbounded)
        continuation.onTermination = { reason in
            if case .cancelled = reason { control.cancel() }
        }
        let buffer = ResultBuffer()
        let flush: () -> Void = {
            guard !buffer.results.isEmpty else { return }
            control.produced(buffer.results.count)
            continuation.yield(buffer.results)
            buffer.results.removeAll(keepingCapacity: true)
        }
        // The buffer, the flush closure and the source form one region that moves to the loop thread as a whole.
        let payload = UncheckedTransfer(JobPayload(source: source, onResult: { buffer.results.append($0) }, onFlush: flush, onProgress: onProgress))
        do {
            try Engine.launch(configuration: configuration, logger: logger, payload: payload, control: control) { result in
                continuation.finish()
                completion.complete(result)
            }
        } catch {
            continuation.finish()
            completion.complete(.failure(error))
        }
        return ResultStream(chunks: chunks, control: control, completion: completion)
    }
}

/// Results of a job started with `AsyncComClient.results(source:)`, one `CommandResult` per well-formed command.
/// Iterate it once.
public struct ResultStream: AsyncSequence, Sendable {
    public typealias Element = CommandResult
    public typealias Failure = Never

    static let highWater = 65_536

    let chunks: AsyncStream<[CommandResult]>
    let control: JobControl
    let completion: JobCompletion

    public func makeAsyncIterator() -> Iterator {
        Iterator(inner: chunks.makeAsyncIterator(), control: control, cancelOnDrop: CancelOnDrop(control))
    }

    /// Awaits the end of the job. Throws as `AsyncComClient.run` does.
    public func summary() async throws -> JobSummary {
        try await completion.wait()
    }

    /// Stops the job: the stream ends and `summary()` throws `CancellationError`.
    public func cancel() {
        control.cancel()
    }

    public struct Iterator: AsyncIteratorProtocol {
        var inner: AsyncStream<[CommandResult]>.Iterator
        let control: JobControl
        /// Shared by the iterator's copies: the last one to go cancels the job (a no-op once it has ended).
        /// Without it, a consumer that stopped early left the engine waiting for it forever (`summary()` hung).
        let cancelOnDrop: CancelOnDrop
        var chunk: [CommandResult] = []
        var index = 0

        public mutating func next() async -> CommandResult? {
            if index == chunk.count {
                guard let next = await inner.next() else { return nil }
                control.consumed(next.count)
                chunk = next
                index = 0
            }
            defer { index += 1 }
            return chunk[index]
        }
    }
}

/// Cancels a job when the last reference to it goes.
final class CancelOnDrop: Sendable {
    private let control: JobControl
    init(_ control: JobControl) { self.control = control }
    deinit { control.cancel() }
}

/// Ends jobs early and gracefully on request, e.g. on Ctrl-C: pass one to `AsyncComClient.run` and call
/// `interrupt()` from any thread. The job stops pulling and sending, hands over the results it has, and returns
/// its summary with `interrupted` set and `notAnswered` counting the commands left without a result. (Task
/// cancellation, by contrast, stops a job at once and throws `CancellationError`.)
public final class JobInterruption: Sendable {
    private struct State {
        var requested = false
        var controls: [JobControl] = []
    }

    private let state = Locked(State())

    public init() {}

    /// Interrupts every job run with this object, now or later (idempotent).
    public func interrupt() {
        let controls = state.withLock { s -> [JobControl] in
            s.requested = true
            return s.controls
        }
        for c in controls { c.interrupt() }
    }

    public var isInterrupted: Bool { state.withLock { $0.requested } }

    func register(_ control: JobControl) {
        let requested = state.withLock { s -> Bool in
            s.controls.removeAll { $0.isFinished }
            s.controls.append(control)
            return s.requested
        }
        if requested { control.interrupt() }
    }
}

/// Collects a callback's results between flushes (loop thread only).
final class ResultBuffer {
    var results: [CommandResult] = []
}

/// What a job hands from the caller to the loop thread.
struct JobPayload {
    var source: any CommandSource
    var onResult: ((CommandResult) -> Void)?
    var onAnswer: ((AnsweredRequest) -> Void)? = nil
    /// Called at the end of each loop callback that delivered results (the stream yields there).
    var onFlush: (() -> Void)?
    var onProgress: ((JobProgress) -> Void)?
}

/// Moves a value to another thread. Sound only for values the sender gives up (`sending` parameters) or that
/// are used on one thread at a time.
struct UncheckedTransfer<Value>: @unchecked Sendable {
    private var stored: Value?
    init(_ value: Value) { stored = value }
    var value: Value { stored! }
}
