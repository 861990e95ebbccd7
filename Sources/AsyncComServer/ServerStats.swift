import Synchronization

/// A snapshot of one reactor's counters (or the sum over all reactors).
public struct ReactorStats: Sendable, Equatable {
    /// Open connections now.
    public var connections: UInt64 = 0
    /// Connections accepted since start (rejected ones not included).
    public var connectionsTotal: UInt64 = 0
    /// Connections refused with `ERR - BUSY`.
    public var rejected: UInt64 = 0
    /// REQ lines handled (well-formed ones, answered now or later).
    public var requests: UInt64 = 0
    /// Items in those requests.
    public var commands: UInt64 = 0
    /// Items answered `?`.
    public var unknown: UInt64 = 0
    /// `ERR` replies sent in answer to a line (malformed request, line too long, ...).
    public var errors: UInt64 = 0
    /// Requests whose reply is not due yet.
    public var inflightRequests: UInt64 = 0
    /// Commands in those requests.
    public var inflightCommands: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    /// The worst delay between a reply's due time and its being queued for sending, in microseconds.
    public var lateMaxMicros: UInt64 = 0
    /// Replies queued more than 1 ms / 10 ms / 100 ms after they were due.
    public var lateOver1ms: UInt64 = 0
    public var lateOver10ms: UInt64 = 0
    public var lateOver100ms: UInt64 = 0
    /// Replies stored until due: those in flight plus those of closed connections not yet reclaimed.
    public var pendingReplies: UInt64 = 0
    /// Bytes of reply text those replies hold.
    public var pendingBytes: UInt64 = 0
    /// Connections that authenticated with a token.
    public var authOK: UInt64 = 0
    /// Connections refused `AUTH_FAILED`: a wrong, empty, binary or too long token (or first line).
    public var authFailed: UInt64 = 0
    /// Connections refused `AUTH_REQUIRED`: their first line was not `HELLO 1 token=...`.
    public var authRequired: UInt64 = 0
    /// Connections closed `AUTH_TIMEOUT`: not authenticated within the auth timeout.
    public var authTimeouts: UInt64 = 0
    /// Connections refused at once because `maxUnauthenticated` were already waiting to authenticate.
    public var authRejected: UInt64 = 0
    /// Connections not yet authenticated, now (included in `connections`).
    public var unauthenticated: UInt64 = 0

    public init() {}

    /// The STATS keys in wire order, paired with their values.
    public var fields: [(String, UInt64)] {
        [
            ("connections", connections), ("connections_total", connectionsTotal), ("rejected", rejected),
            ("requests", requests), ("commands", commands), ("unknown", unknown), ("errors", errors),
            ("inflight_requests", inflightRequests), ("inflight_commands", inflightCommands),
            ("bytes_in", bytesIn), ("bytes_out", bytesOut),
            ("late_max_us", lateMaxMicros), ("late_over_1ms", lateOver1ms), ("late_over_10ms", lateOver10ms),
            ("late_over_100ms", lateOver100ms), ("pending_replies", pendingReplies), ("pending_bytes", pendingBytes),
            ("auth_ok", authOK), ("auth_failed", authFailed), ("auth_required", authRequired),
            ("auth_timeouts", authTimeouts), ("auth_rejected", authRejected), ("unauthenticated", unauthenticated),
        ]
    }

    /// Sums counters; `lateMaxMicros` takes the maximum.
    public static func + (a: ReactorStats, b: ReactorStats) -> ReactorStats {
        var s = ReactorStats()
        s.connections = a.connections &+ b.connections
        s.connectionsTotal = a.connectionsTotal &+ b.connectionsTotal
        s.rejected = a.rejected &+ b.rejected
        s.requests = a.requests &+ b.requests
        s.commands = a.commands &+ b.commands
        s.unknown = a.unknown &+ b.unknown
        s.errors = a.errors &+ b.errors
        s.inflightRequests = a.inflightRequests &+ b.inflightRequests
        s.inflightCommands = a.inflightCommands &+ b.inflightCommands
        s.bytesIn = a.bytesIn &+ b.bytesIn
        s.bytesOut = a.bytesOut &+ b.bytesOut
        s.lateMaxMicros = max(a.lateMaxMicros, b.lateMaxMicros)
        s.lateOver1ms = a.lateOver1ms &+ b.lateOver1ms
        s.lateOver10ms = a.lateOver10ms &+ b.lateOver10ms
        s.lateOver100ms = a.lateOver100ms &+ b.lateOver100ms
        s.pendingReplies = a.pendingReplies &+ b.pendingReplies
        s.pendingBytes = a.pendingBytes &+ b.pendingBytes
        s.authOK = a.authOK &+ b.authOK
        s.authFailed = a.authFailed &+ b.authFailed
        s.authRequired = a.authRequired &+ b.authRequired
        s.authTimeouts = a.authTimeouts &+ b.authTimeouts
        s.authRejected = a.authRejected &+ b.authRejected
        s.unauthenticated = a.unauthenticated &+ b.unauthenticated
        return s
    }
}

/// Counters for every reactor and their total.
public struct ServerStats: Sendable, Equatable {
    public var reactors: [ReactorStats]
    public var total: ReactorStats

    public init(reactors: [ReactorStats]) {
        self.reactors = reactors
        self.total = reactors.reduce(ReactorStats(), +)
    }

    /// The STATS line's pairs: totals, `reactors=<n>`, then every key per reactor as `r<k>.<key>`.
    public var fields: [(String, UInt64)] {
        var out = total.fields
        out.append(("reactors", UInt64(reactors.count)))
        for (k, r) in reactors.enumerated() {
            for (key, value) in r.fields { out.append(("r\(k).\(key)", value)) }
        }
        return out
    }
}

/// One reactor's live counters. Only the owning reactor thread writes them (plain load + store, no locked
/// read-modify-write); any thread may read them for STATS or `Server.stats()`.
final class ReactorCounters: Sendable {
    let connections = Atomic<UInt64>(0)
    let connectionsTotal = Atomic<UInt64>(0)
    let rejected = Atomic<UInt64>(0)
    let requests = Atomic<UInt64>(0)
    let commands = Atomic<UInt64>(0)
    let unknown = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)
    let inflightRequests = Atomic<UInt64>(0)
    let inflightCommands = Atomic<UInt64>(0)
    let bytesIn = Atomic<UInt64>(0)
    let bytesOut = Atomic<UInt64>(0)
    let lateMaxMicros = Atomic<UInt64>(0)
    let lateOver1ms = Atomic<UInt64>(0)
    let lateOver10ms = Atomic<UInt64>(0)
    let lateOver100ms = Atomic<UInt64>(0)
    let pendingReplies = Atomic<UInt64>(0)
    let pendingBytes = Atomic<UInt64>(0)
    let authOK = Atomic<UInt64>(0)
    let authFailed = Atomic<UInt64>(0)
    let authRequired = Atomic<UInt64>(0)
    let authTimeouts = Atomic<UInt64>(0)
    let authRejected = Atomic<UInt64>(0)
    let unauthenticated = Atomic<UInt64>(0)

    init() {}

    var snapshot: ReactorStats {
        var s = ReactorStats()
        s.connections = connections.load(ordering: .relaxed)
        s.connectionsTotal = connectionsTotal.load(ordering: .relaxed)
        s.rejected = rejected.load(ordering: .relaxed)
        s.requests = requests.load(ordering: .relaxed)
        s.commands = commands.load(ordering: .relaxed)
        s.unknown = unknown.load(ordering: .relaxed)
        s.errors = errors.load(ordering: .relaxed)
        s.inflightRequests = inflightRequests.load(ordering: .relaxed)
        s.inflightCommands = inflightCommands.load(ordering: .relaxed)
        s.bytesIn = bytesIn.load(ordering: .relaxed)
        s.bytesOut = bytesOut.load(ordering: .relaxed)
        s.lateMaxMicros = lateMaxMicros.load(ordering: .relaxed)
        s.lateOver1ms = lateOver1ms.load(ordering: .relaxed)
        s.lateOver10ms = lateOver10ms.load(ordering: .relaxed)
        s.lateOver100ms = lateOver100ms.load(ordering: .relaxed)
        s.pendingReplies = pendingReplies.load(ordering: .relaxed)
        s.pendingBytes = pendingBytes.load(ordering: .relaxed)
        s.authOK = authOK.load(ordering: .relaxed)
        s.authFailed = authFailed.load(ordering: .relaxed)
        s.authRequired = authRequired.load(ordering: .relaxed)
        s.authTimeouts = authTimeouts.load(ordering: .relaxed)
        s.authRejected = authRejected.load(ordering: .relaxed)
        s.unauthenticated = unauthenticated.load(ordering: .relaxed)
        return s
    }

    /// Records a reply queued `lateNanos` after its due time.
    @inline(__always) func recordLateness(_ lateNanos: UInt64) {
        let micros = lateNanos / 1000
        if micros > lateMaxMicros.load(ordering: .relaxed) { lateMaxMicros.store(micros, ordering: .relaxed) }
        if lateNanos < 1_000_000 { return }
        lateOver1ms.add(1)
        if lateNanos >= 10_000_000 { lateOver10ms.add(1) }
        if lateNanos >= 100_000_000 { lateOver100ms.add(1) }
    }
}

extension Atomic where Value == UInt64 {
    /// Single-writer increment: the owning thread is the only writer, so a load and a store suffice.
    @inline(__always) func add(_ n: UInt64) { store(load(ordering: .relaxed) &+ n, ordering: .relaxed) }
    @inline(__always) func subtract(_ n: UInt64) { store(load(ordering: .relaxed) &- n, ordering: .relaxed) }
}
