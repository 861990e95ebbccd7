import AsyncComCore
import Histogram

/// Latency percentiles of answered commands, in nanoseconds (HdrHistogram, 3 significant digits, recorded
/// in microseconds so the values are multiples of 1,000 ns).
public struct LatencySummary: Sendable, Codable, Equatable {
    /// Commands recorded (ok + unknown answers; failures have no latency).
    public var count: UInt64
    /// Median.
    public var p50Nanos: UInt64
    public var p90Nanos: UInt64
    public var p99Nanos: UInt64
    public var maxNanos: UInt64
    public var meanNanos: Double

    /// Explicit values (tests, merging).
    public init(count: UInt64 = 0, p50Nanos: UInt64 = 0, p90Nanos: UInt64 = 0, p99Nanos: UInt64 = 0, maxNanos: UInt64 = 0, meanNanos: Double = 0) {
        self.count = count
        self.p50Nanos = p50Nanos
        self.p90Nanos = p90Nanos
        self.p99Nanos = p99Nanos
        self.maxNanos = maxNanos
        self.meanNanos = meanNanos
    }

    /// Reads the percentiles out of a histogram of microseconds.
    public init(microseconds h: Histogram<UInt64>) {
        guard h.totalCount > 0 else { self.init(); return }
        self.init(
            count: h.totalCount,
            p50Nanos: h.valueAtPercentile(50) * 1000,
            p90Nanos: h.valueAtPercentile(90) * 1000,
            p99Nanos: h.valueAtPercentile(99) * 1000,
            maxNanos: h.max * 1000,
            meanNanos: h.mean * 1000
        )
    }
}

/// One server's share of a job.
public struct ServerSummary: Sendable, Codable, Equatable {
    /// The endpoint as a URL (`tcp://127.0.0.1:5557`).
    public var endpoint: String
    /// Commands answered by this server with a value / with `?`.
    public var ok: Int
    public var unknown: Int
    /// Commands that failed while routed to this server.
    public var failed: Int
    /// Requests sent (first sends, re-sends and retries all count).
    public var requestsSent: Int
    /// Successful connections (HELLO answered) beyond the first one of each connection slot.
    public var reconnects: Int
    /// Connections lost after the handshake (EOF, reset, write error, protocol error, `ERR -`).
    public var connectionsLost: Int
    /// Requests that got no reply in time on this server.
    public var timeouts: Int
    /// Whether the server was up (a connection answered HELLO) when the job ended.
    public var upAtEnd: Bool
    /// Times a connection with requests pending heard nothing for a whole request timeout (the server stalled).
    public var stalls: Int
    /// Connections in use (the configured count; or one, one per reactor once the server lagged, and more for
    /// the budget).
    public var connections: Int
    /// The server's reactor count from HELLO (0: not known), and how many of them got a connection: fewer while
    /// one connection kept up, or when the bounded attempts to reach every reactor failed (`coverageFailed`).
    public var reactors: Int
    public var reactorsCovered: Int
    /// The client chose the connection count (no `connectionsPerServer`), the server lagged, and the bounded
    /// attempts could not reach every reactor (SO_REUSEPORT's hash kept choosing the same ones).
    public var coverageFailed: Bool
    /// Latency of the commands this server answered.
    public var latency: LatencySummary

    /// Explicit values (tests, merging).
    public init(endpoint: String, ok: Int = 0, unknown: Int = 0, failed: Int = 0, requestsSent: Int = 0, reconnects: Int = 0,
                connectionsLost: Int = 0, timeouts: Int = 0, upAtEnd: Bool = false, latency: LatencySummary = LatencySummary(),
                stalls: Int = 0, connections: Int = 0, reactors: Int = 0, reactorsCovered: Int = 0, coverageFailed: Bool = false) {
        self.endpoint = endpoint
        self.ok = ok
        self.unknown = unknown
        self.failed = failed
        self.requestsSent = requestsSent
        self.reconnects = reconnects
        self.connectionsLost = connectionsLost
        self.timeouts = timeouts
        self.upAtEnd = upAtEnd
        self.stalls = stalls
        self.connections = connections
        self.reactors = reactors
        self.reactorsCovered = reactorsCovered
        self.coverageFailed = coverageFailed
        self.latency = latency
    }
}

/// The outcome of a whole job.
///
/// `sum` is an `Int128`: the sum of up to 2^63 responses of 64 bits each cannot overflow it, so no overflow
/// check is needed and the figure is always exact.
public struct JobSummary: Sendable, Codable {
    /// Sum of the values of all `ok` commands, each command counted exactly once.
    public var sum: Int128
    /// Commands answered with a value.
    public var ok: Int
    /// Commands answered with `?` (not in the server's map).
    public var unknown: Int
    /// Commands that got no answer (timeouts exhausted, server unreachable, `ERR` for their request).
    public var failed: Int
    /// Source lines skipped as malformed (never sent).
    public var malformed: Int
    /// Wall time from the engine's start (loop thread up) to the last result.
    public var elapsedSeconds: Double
    /// (ok + unknown + failed) / elapsedSeconds.
    public var commandsPerSecond: Double
    /// Percentiles of answered commands (latency = reply time - first send of its request).
    public var latency: LatencySummary
    /// Latencies of answered commands in microseconds, for callers that want more than the percentiles.
    public var latencyHistogramMicros: Histogram<UInt64>
    /// Per server, in configuration order.
    public var servers: [ServerSummary]
    /// Distinct requests built (each with a unique id).
    public var requests: Int
    /// Re-sends after a request timeout.
    public var retries: Int
    /// Re-sends of requests that were in flight on a lost connection.
    public var resends: Int
    /// Successful reconnections, all servers.
    public var reconnects: Int
    /// Replies for ids already answered, failed or never sent (ignored).
    public var lateReplies: Int
    /// Reply lines the client could not parse or match (ignored; timeouts handle their requests).
    public var badReplies: Int
    /// The first failure reason seen, if any command failed.
    public var firstFailure: String?
    /// The job was ended early by `JobInterruption.interrupt()` (Ctrl-C in the CLI): the counts cover only the
    /// commands that got a result before that.
    public var interrupted: Bool = false
    /// Commands read from the source that had no result when the job was interrupted (queued or in flight);
    /// 0 unless `interrupted`. Input not read yet is not counted.
    public var notAnswered: Int = 0

    /// Commands with a result.
    public var total: Int { ok + unknown + failed }
    /// True when every well-formed command got an answer (a value or unknown): the CLI's exit status 0.
    public var allAnswered: Bool { failed == 0 }

    public init(sum: Int128 = 0, ok: Int = 0, unknown: Int = 0, failed: Int = 0, malformed: Int = 0,
                elapsedSeconds: Double = 0, commandsPerSecond: Double = 0, latency: LatencySummary = LatencySummary(),
                latencyHistogramMicros: Histogram<UInt64> = JobSummary.makeHistogram(), servers: [ServerSummary] = [],
                requests: Int = 0, retries: Int = 0, resends: Int = 0, reconnects: Int = 0, lateReplies: Int = 0,
                badReplies: Int = 0, firstFailure: String? = nil) {
        // Explicit values (tests, merging); the engine fills every field.
        self.sum = sum
        self.ok = ok
        self.unknown = unknown
        self.failed = failed
        self.malformed = malformed
        self.elapsedSeconds = elapsedSeconds
        self.commandsPerSecond = commandsPerSecond
        self.latency = latency
        self.latencyHistogramMicros = latencyHistogramMicros
        self.servers = servers
        self.requests = requests
        self.retries = retries
        self.resends = resends
        self.reconnects = reconnects
        self.lateReplies = lateReplies
        self.badReplies = badReplies
        self.firstFailure = firstFailure
    }

    /// An empty latency histogram in microseconds, 1 µs to 1 day, 3 significant digits.
    public static func makeHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 86_400_000_000, numberOfSignificantValueDigits: .three)
    }
}
