import AsyncComCore

/// What became of one command.
public enum CommandOutcome: Sendable, Equatable {
    /// The device's response.
    case value(Int64)
    /// The server has no such (device, command): `?` on the wire.
    case unknown
    /// No answer: timeouts exhausted, server unreachable, or an `ERR` for its request. `reason` is one line.
    case failed(reason: String)
}

/// The result of one well-formed command.
public struct CommandResult: Sendable, Equatable {
    /// 0-based position among the source's well-formed commands (input order).
    public var sequence: Int
    /// The command as read: device, item text (`device:command`), line number.
    public var entry: CommandEntry
    public var outcome: CommandOutcome
    /// The server that answered, or the one the command was routed to when it failed.
    public var server: Endpoint
    /// Nanoseconds from the first send of its request to the answer (0 when it was never sent).
    public var latencyNanos: UInt64

    public init(sequence: Int, entry: CommandEntry, outcome: CommandOutcome, server: Endpoint, latencyNanos: UInt64) {
        self.sequence = sequence
        self.entry = entry
        self.outcome = outcome
        self.server = server
        self.latencyNanos = latencyNanos
    }
}

/// A snapshot of a running job, delivered about four times a second to `onProgress`.
public struct JobProgress: Sendable, Equatable {
    /// Commands with a result (ok, unknown or failed).
    public var done: Int
    /// Well-formed commands pulled from the source so far (the total once `sourceExhausted`).
    public var pulled: Int
    public var sourceExhausted: Bool
    /// Commands sent and not yet answered.
    public var inFlight: Int
    /// Commands that failed so far (included in `done`).
    public var failed: Int
    public var elapsedSeconds: Double
    /// Commands per second over the whole job so far.
    public var commandsPerSecond: Double

    public init(done: Int, pulled: Int, sourceExhausted: Bool, inFlight: Int, failed: Int, elapsedSeconds: Double, commandsPerSecond: Double) {
        self.done = done
        self.pulled = pulled
        self.sourceExhausted = sourceExhausted
        self.inFlight = inFlight
        self.failed = failed
        self.elapsedSeconds = elapsedSeconds
        self.commandsPerSecond = commandsPerSecond
    }
}
