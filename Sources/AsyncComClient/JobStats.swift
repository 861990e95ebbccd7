import AsyncComCore
import Histogram

/// Counters of one server during a job.
struct JobServerStats {
    var ok = 0
    var unknown = 0
    var failed = 0
    var requestsSent = 0
    var reconnects = 0
    var connectionsLost = 0
    var timeouts = 0
    var stalls = 0
    var latencyMicros = JobSummary.makeHistogram()
}

/// Everything a `JobSummary` is made of, accumulated on the loop thread. Pure: no clock, no I/O.
struct JobStats {
    var sum: Int128 = 0
    var ok = 0
    var unknown = 0
    var failed = 0
    var latencyMicros = JobSummary.makeHistogram()
    var servers: [JobServerStats]
    var requests = 0
    var retries = 0
    var resends = 0
    var lateReplies = 0
    var badReplies = 0
    var firstFailure: String?

    init(serverCount: Int) {
        servers = Array(repeating: JobServerStats(), count: serverCount)
    }

    var done: Int { ok + unknown + failed }

    /// Records the answer to a request of `results.count` commands from `server`.
    mutating func recordAnswer(server: Int, results: [ItemResult], latencyNanos: UInt64) {
        var okCount = 0
        var partial: Int128 = 0
        for r in results {
            if case .value(let v) = r {
                partial += Int128(v)
                okCount += 1
            }
        }
        sum += partial
        let unknownCount = results.count - okCount
        ok += okCount
        unknown += unknownCount
        servers[server].ok += okCount
        servers[server].unknown += unknownCount
        // Latency in whole microseconds, at least 1 so sub-microsecond answers still count.
        let micros = max(1, latencyNanos / 1000)
        let n = UInt64(results.count)
        latencyMicros.record(micros, count: n)
        servers[server].latencyMicros.record(micros, count: n)
    }

    /// `reason` is evaluated for the first failure only: failing the rest of a job (millions of commands, one
    /// by one, once every server is down) builds no string per command.
    mutating func recordFailure(server: Int, commands: Int, reason: @autoclosure () -> String) {
        failed += commands
        servers[server].failed += commands
        if firstFailure == nil { firstFailure = reason() }
    }

    /// `connections[i]`: server `i`'s connection plan; nil: none known.
    func summary(elapsedNanos: UInt64, malformed: Int, endpoints: [Endpoint], upAtEnd: [Bool],
                 connections: [ConnectionPlan]? = nil) -> JobSummary {
        let elapsed = Double(elapsedNanos) / 1e9
        var reconnects = 0
        var serverSummaries: [ServerSummary] = []
        for (i, s) in servers.enumerated() {
            reconnects += s.reconnects
            serverSummaries.append(ServerSummary(
                endpoint: endpoints[i].description, ok: s.ok, unknown: s.unknown, failed: s.failed,
                requestsSent: s.requestsSent, reconnects: s.reconnects, connectionsLost: s.connectionsLost,
                timeouts: s.timeouts, upAtEnd: upAtEnd[i], latency: LatencySummary(microseconds: s.latencyMicros),
                stalls: s.stalls, connections: connections?[i].kept ?? 0, reactors: connections?[i].reactors ?? 0,
                reactorsCovered: connections?[i].coveredCount ?? 0, coverageFailed: connections?[i].coverageFailed ?? false))
        }
        return JobSummary(
            sum: sum, ok: ok, unknown: unknown, failed: failed, malformed: malformed,
            elapsedSeconds: elapsed, commandsPerSecond: elapsed > 0 ? Double(done) / elapsed : 0,
            latency: LatencySummary(microseconds: latencyMicros), latencyHistogramMicros: latencyMicros,
            servers: serverSummaries, requests: requests, retries: retries, resends: resends, reconnects: reconnects,
            lateReplies: lateReplies, badReplies: badReplies, firstFailure: firstFailure)
    }
}
