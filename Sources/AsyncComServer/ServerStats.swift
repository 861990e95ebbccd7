import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// MARK: - The counter table

/// Every counter the server keeps. `definition` below is THE table: STATS, the shutdown log line and `/metrics`
/// are all generated from it, so a new counter is one case here plus one row there (and `StatCounters.Slots`
/// grows by one).
public enum StatKey: Int, CaseIterable, Sendable {
    case connections, connectionsTotal, rejected, requests, commands, unknown, errors
    case inflightRequests, inflightCommands, bytesIn, bytesOut
    case lateMaxMicros, lateOver1ms, lateOver10ms, lateOver100ms
    case lateReplies, lateTimerMicros, lateWriteMicros, lateWriteMaxMicros, lateQueuedMicros, lateQueuedMaxMicros
    case pendingReplies, pendingBytes
    case httpRequests
    case authOK, authFailed, authRequired, authTimeouts, authRejected, unauthenticated
    case tlsHandshakes, tlsFailed, tlsTimeouts
    case mapGeneration, reloadFailures

    /// name (the STATS key), kind, scope, unit, help text. STATS lists the keys in case order.
    public var definition: StatDefinition {
        switch self {
        case .connections: .init("connections", .gauge, .reactor, "Connections open now.")
        case .connectionsTotal: .init("connections_total", .counter, .reactor,
                                      "Connections accepted since start (rejected ones not included).")
        case .rejected: .init("rejected", .counter, .reactor, "Connections refused with ERR - BUSY.")
        case .requests: .init("requests", .counter, .reactor,
                              "Well-formed requests handled (answered or pending).")
        case .commands: .init("commands", .counter, .reactor, "Items in those requests.")
        case .unknown: .init("unknown", .counter, .reactor, "Items not in the device map.")
        case .errors: .init("errors", .counter, .reactor,
                            "Error replies sent in answer to a request (malformed request, line too long, ...).")
        case .inflightRequests: .init("inflight_requests", .gauge, .reactor,
                                      "Requests whose reply is not due yet, now.")
        case .inflightCommands: .init("inflight_commands", .gauge, .reactor, "Items in those requests, now.")
        case .bytesIn: .init("bytes_in", .counter, .reactor, "Bytes read from clients.", unit: .bytes)
        case .bytesOut: .init("bytes_out", .counter, .reactor, "Bytes written to clients.", unit: .bytes)
        case .lateMaxMicros: .init("late_max_us", .maximum, .reactor,
                                   "Worst delay between a reply's due time and its being queued for sending.",
                                   unit: .microseconds)
        case .lateOver1ms: .init("late_over_1ms", .counter, .reactor, "Replies queued more than 1 ms after due.")
        case .lateOver10ms: .init("late_over_10ms", .counter, .reactor, "Replies queued more than 10 ms after due.")
        case .lateOver100ms: .init("late_over_100ms", .counter, .reactor,
                                   "Replies queued more than 100 ms after due.")
        // Lateness by part (sums, so that a reader takes means over an interval from two readings).
        case .lateReplies: .init("late_replies", .counter, .reactor,
                                 "Replies sent when due (requests with a wait above 0): what late_timer_us and late_write_us sum over.")
        case .lateTimerMicros: .init("late_timer_us", .counter, .reactor,
                                     "Sum over those replies of due time -> the reply timer's firing.",
                                     unit: .microseconds)
        case .lateWriteMicros: .init("late_write_us", .counter, .reactor,
                                     "Sum over those replies of the timer's firing -> the write(2) of the reply.",
                                     unit: .microseconds)
        case .lateWriteMaxMicros: .init("late_write_max_us", .maximum, .reactor,
                                        "Worst delay between the timer's firing and the write of a reply.",
                                        unit: .microseconds)
        case .lateQueuedMicros: .init("late_queued_us", .counter, .reactor,
                                      "Sum over requests of the time their bytes waited in the kernel before a reactor read them (receive timestamps; the wait starts at the read).",
                                      unit: .microseconds)
        case .lateQueuedMaxMicros: .init("late_queued_max_us", .maximum, .reactor,
                                         "Worst time a request's bytes waited in the kernel before a reactor read them.",
                                         unit: .microseconds)
        case .pendingReplies: .init("pending_replies", .gauge, .reactor,
                                    "Replies stored until due: those in flight plus those of closed connections not yet reclaimed.")
        case .pendingBytes: .init("pending_bytes", .gauge, .reactor, "Bytes of reply text those replies hold.",
                                  unit: .bytes)
        case .httpRequests: .init("http_requests", .counter, .reactor,
                                  "HTTP requests received (every path; POST /v1/commands also counts in requests).")
        case .authOK: .init("auth_ok", .counter, .reactor, "Connections that authenticated with a token.")
        case .authFailed: .init("auth_failed", .counter, .reactor,
                                "Connections refused AUTH_FAILED: a wrong, empty, binary or too long token or first line.")
        case .authRequired: .init("auth_required", .counter, .reactor,
                                  "Connections refused AUTH_REQUIRED: the first line was not HELLO 1 token=...")
        case .authTimeouts: .init("auth_timeouts", .counter, .reactor,
                                  "Connections closed AUTH_TIMEOUT: not authenticated within the auth timeout.")
        case .authRejected: .init("auth_rejected", .counter, .reactor,
                                  "Connections refused at once because max-unauthenticated were waiting.")
        case .unauthenticated: .init("unauthenticated", .gauge, .reactor,
                                     "Connections not yet authenticated, now (included in connections).")
        case .tlsHandshakes: .init("tls_handshakes", .counter, .reactor, "TLS handshakes completed.")
        case .tlsFailed: .init("tls_failed", .counter, .reactor,
                               "TLS handshakes that failed (plaintext on a TLS port, bad or missing client certificate, ...).")
        case .tlsTimeouts: .init("tls_timeouts", .counter, .reactor,
                                 "TLS handshakes not finished within the auth timeout (connection closed).")
        case .mapGeneration: .init("map_generation", .gauge, .global,
                                   "The device map published to the reactors: 1 at start, one more per successful reload.")
        case .reloadFailures: .init("reload_failures", .counter, .global,
                                    "Map reloads refused (bad or unreadable file); the previous map stayed in use.")
        }
    }
}

/// One row of the counter table.
public struct StatDefinition: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Only grows; reactors' values are summed.
        case counter
        /// A level now; reactors' values are summed.
        case gauge
        /// A high-water mark; the total is the largest reactor value.
        case maximum
    }

    public enum Scope: Sendable, Equatable {
        /// One value per reactor, written by that reactor's thread alone; STATS lists the total and `r<k>.<name>`.
        case reactor
        /// One value for the whole server, written from any thread (`StatCounters.addFromAnyThread`).
        case global
    }

    public enum Unit: Sendable, Equatable {
        case count, bytes, microseconds
    }

    /// The STATS key.
    public let name: String
    public let kind: Kind
    public let scope: Scope
    public let unit: Unit
    public let help: String

    init(_ name: String, _ kind: Kind, _ scope: Scope, _ help: String, unit: Unit = .count) {
        self.name = name
        self.kind = kind
        self.scope = scope
        self.unit = unit
        self.help = help
    }

    /// Whether the shutdown log line reports it: everything accumulated over the run, not levels (which are 0
    /// once the server has drained).
    public var isCumulative: Bool { kind != .gauge }
}

// MARK: - Snapshots

/// A snapshot of one reactor's counters (or the total over all reactors plus the global counters), indexed by
/// `StatKey`.
public struct ReactorStats: Sendable, Equatable {
    public private(set) var values: [UInt64]
    /// Replies per lateness bucket (`LatenessHistogram.boundsNanos`, then one for longer): not cumulative.
    public var latenessBuckets: [UInt64]
    /// Total lateness of those replies, in nanoseconds.
    public var latenessSumNanos: UInt64 = 0

    public init() {
        values = Array(repeating: 0, count: StatKey.allCases.count)
        latenessBuckets = Array(repeating: 0, count: LatenessHistogram.bucketCount)
    }

    public subscript(key: StatKey) -> UInt64 {
        get { values[key.rawValue] }
        set { values[key.rawValue] = newValue }
    }

    /// `(name, value)` for `keys`, in table order.
    public func fields(_ keys: some Sequence<StatKey> = StatKey.allCases) -> [(String, UInt64)] {
        keys.map { ($0.definition.name, self[$0]) }
    }

    /// Combines two reactors' values as each key's kind says (sum, or maximum).
    public static func + (a: ReactorStats, b: ReactorStats) -> ReactorStats {
        var s = ReactorStats()
        for key in StatKey.allCases {
            s[key] = key.definition.kind == .maximum ? max(a[key], b[key]) : a[key] &+ b[key]
        }
        for k in s.latenessBuckets.indices { s.latenessBuckets[k] = a.latenessBuckets[k] &+ b.latenessBuckets[k] }
        s.latenessSumNanos = a.latenessSumNanos &+ b.latenessSumNanos
        return s
    }
}

/// Counters for every reactor, the global ones, and the total.
public struct ServerStats: Sendable, Equatable {
    public var reactors: [ReactorStats]
    /// Reactor keys combined over the reactors; global keys as they are.
    public var total: ReactorStats

    public init(reactors: [ReactorStats], global: ReactorStats = ReactorStats()) {
        self.reactors = reactors
        var total = reactors.reduce(ReactorStats(), +)
        for key in StatKey.allCases where key.definition.scope == .global { total[key] = global[key] }
        self.total = total
    }

    /// The keys kept per reactor, in table order.
    public static let reactorKeys = StatKey.allCases.filter { $0.definition.scope == .reactor }

    /// The STATS line's pairs: every total, `reactors=<n>`, then every per-reactor key of each reactor as
    /// `r<k>.<name>`.
    public var fields: [(String, UInt64)] {
        var out = total.fields()
        out.append(("reactors", UInt64(reactors.count)))
        for (k, r) in reactors.enumerated() {
            for (name, value) in r.fields(Self.reactorKeys) { out.append(("r\(k).\(name)", value)) }
        }
        return out
    }

    /// The shutdown log line's metadata: the cumulative totals.
    public var summary: [(String, UInt64)] {
        total.fields(StatKey.allCases.filter { $0.definition.isCumulative })
    }
}

// MARK: - Live counters

/// Live counters, one slot per `StatKey`: each reactor has one (its thread is the only writer of its reactor
/// keys: a plain load + store, no locked read-modify-write), and the server one more for the global keys. Any
/// thread may read them for STATS, `/metrics` or `Server.stats()`.
///
/// Counters that describe one state (a request's `requests`, `commands`, `inflight_*` and `pending_*`; a reply
/// leaving `inflight_*` and `pending_*`) change together inside `update`, a sequence lock: `snapshot` retries
/// while an update is half done, so a snapshot never shows `inflight_requests=2` with `pending_replies=0`. The
/// writer pays two plain stores per update (no locked instruction on x86); a reader retries only when it
/// overlaps one.
final class StatCounters: Sendable {
    /// One atomic per `StatKey` case (`init` checks the count). Inline in the object: `counters.add(.requests)`
    /// compiles to one `add` to memory (checked in the -O disassembly), as the named properties did.
    typealias Slots = InlineArray<35, Atomic<UInt64>>
    private let slots: Slots
    /// Odd while an `update` is in progress; bumped by two per update.
    private let sequence = Atomic<UInt64>(0)

    init() {
        precondition(Slots.count == StatKey.allCases.count,
                     "StatCounters.Slots holds \(Slots.count) counters but StatKey has \(StatKey.allCases.count)")
        slots = Slots { _ in Atomic(0) }
    }

    @inline(__always) func load(_ key: StatKey) -> UInt64 { slots[key.rawValue].load(ordering: .relaxed) }

    @inline(__always) func store(_ key: StatKey, _ value: UInt64) {
        slots[key.rawValue].store(value, ordering: .relaxed)
    }

    /// Single-writer increment: the owning thread is the only writer, so a load and a store suffice.
    @inline(__always) func add(_ key: StatKey, _ n: UInt64 = 1) { store(key, load(key) &+ n) }
    @inline(__always) func subtract(_ key: StatKey, _ n: UInt64 = 1) { store(key, load(key) &- n) }

    /// Increment of a global counter that several threads write.
    func addFromAnyThread(_ key: StatKey, _ n: UInt64 = 1) {
        slots[key.rawValue].wrappingAdd(n, ordering: .relaxed)
    }

    /// Runs `body`, whose counter changes a `snapshot` sees all or none of. Owning thread only, not nested.
    @inline(__always) func update<R>(_ body: () throws -> R) rethrows -> R {
        let s = sequence.load(ordering: .relaxed)
        sequence.store(s &+ 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)  // the odd sequence is visible before any counter changes
        defer { sequence.store(s &+ 2, ordering: .releasing) }
        return try body()
    }

    /// Every counter, as of a moment between two `update`s.
    var snapshot: ReactorStats {
        var s = ReactorStats()
        while true {
            let before = sequence.load(ordering: .acquiring)
            if before & 1 == 0 {
                for key in StatKey.allCases { s[key] = load(key) }
                for k in 0..<LatenessHistogram.bucketCount {
                    s.latenessBuckets[k] = lateness.buckets[k].load(ordering: .relaxed)
                }
                s.latenessSumNanos = lateness.sumNanos.load(ordering: .relaxed)
                atomicMemoryFence(ordering: .acquiring)  // the loads above happen before the check below
                if sequence.load(ordering: .relaxed) == before { return s }
            }
            sched_yield()
        }
    }

    /// Reply lateness for `/metrics` (single writer, like the counters).
    let lateness = LatenessHistogram()

    /// Records a reply queued `lateNanos` after its due time.
    @inline(__always) func recordLateness(_ lateNanos: UInt64) {
        lateness.record(lateNanos)
        let micros = lateNanos / 1000
        add(.lateReplies)
        add(.lateTimerMicros, micros)
        if micros > load(.lateMaxMicros) { store(.lateMaxMicros, micros) }
        if lateNanos < 1_000_000 { return }
        add(.lateOver1ms)
        if lateNanos >= 10_000_000 { add(.lateOver10ms) }
        if lateNanos >= 100_000_000 { add(.lateOver100ms) }
    }

    /// Records `replies` written `nanos` after the timer fired that made them due.
    @inline(__always) func recordWriteDelay(_ nanos: UInt64, replies: Int) {
        let micros = nanos / 1000
        add(.lateWriteMicros, micros &* UInt64(replies))
        if micros > load(.lateWriteMaxMicros) { store(.lateWriteMaxMicros, micros) }
    }

    /// Records a request whose bytes waited `nanos` in the kernel before they were read.
    @inline(__always) func recordQueued(_ nanos: UInt64) {
        let micros = nanos / 1000
        add(.lateQueuedMicros, micros)
        if micros > load(.lateQueuedMaxMicros) { store(.lateQueuedMaxMicros, micros) }
    }
}

/// A histogram of reply lateness with Prometheus-style bounds, written by one reactor thread, read by any.
/// A record is a few compares (most replies fall in the first buckets) and two single-writer stores.
final class LatenessHistogram: Sendable {
    /// Upper bounds in nanoseconds: 0.1 ms ... 2.5 s; one more bucket holds everything later.
    static let boundsNanos: [UInt64] = [
        100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000,
        100_000_000, 250_000_000, 500_000_000, 1_000_000_000, 2_500_000_000,
    ]
    static let bucketCount = 15
    typealias Buckets = InlineArray<15, Atomic<UInt64>>
    let buckets: Buckets
    let sumNanos = Atomic<UInt64>(0)

    init() {
        precondition(Self.boundsNanos.count + 1 == Self.bucketCount, "LatenessHistogram bounds and buckets out of step")
        buckets = Buckets { _ in Atomic(0) }
    }

    @inline(__always) func record(_ nanos: UInt64) {
        var k = 0
        while k < Self.bucketCount - 1 && nanos > Self.boundsNanos[k] { k += 1 }
        buckets[k].store(buckets[k].load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        sumNanos.store(sumNanos.load(ordering: .relaxed) &+ nanos, ordering: .relaxed)
    }
}
