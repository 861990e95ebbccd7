@testable import AsyncComServer
import Testing

/// The counter table in ServerStats.swift is the one definition STATS, the shutdown log and /metrics come from.
@Suite struct ServerStatsTableTests {
    @Test("every key has a unique STATS name made of lowercase letters, digits and underscores, and help text")
    func namesAreUniqueAndWellFormed() {
        let names = StatKey.allCases.map(\.definition.name)
        #expect(Set(names).count == names.count)
        for key in StatKey.allCases {
            let d = key.definition
            #expect(!d.name.isEmpty && d.name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 },
                    "\(d.name)")
            #expect(!d.help.isEmpty && !d.help.contains("\n"), "\(d.name)")
        }
    }

    @Test("the live counters have one slot per key")
    func slotsMatchKeys() {
        #expect(StatCounters.Slots.count == StatKey.allCases.count)
        let c = StatCounters()
        for key in StatKey.allCases { c.add(key, UInt64(key.rawValue) + 1) }
        c.subtract(.requests, 2)
        let s = c.snapshot
        for key in StatKey.allCases where key != .requests { #expect(s[key] == UInt64(key.rawValue) + 1) }
        #expect(s[.requests] == UInt64(StatKey.requests.rawValue) + 1 - 2)
    }

    @Test("totals sum counters and gauges, take the largest maximum, and keep global keys as they are")
    func totalsFollowTheKind() {
        var a = ReactorStats(), b = ReactorStats(), global = ReactorStats()
        for key in StatKey.allCases {
            a[key] = 3
            b[key] = 5
            global[key] = 100
        }
        let stats = ServerStats(reactors: [a, b], global: global)
        for key in StatKey.allCases {
            let d = key.definition
            let expected: UInt64 = d.scope == .global ? 100 : d.kind == .maximum ? 5 : 8
            #expect(stats.total[key] == expected, "\(d.name)")
        }
    }

    @Test("STATS lists every total in table order, then reactors=<n>, then each reactor's keys as r<k>.<name>")
    func statsLineShape() {
        var r0 = ReactorStats()
        r0[.requests] = 2
        let stats = ServerStats(reactors: [r0, ReactorStats()])
        let names = stats.fields.map(\.0)
        let perReactor = StatKey.allCases.filter { $0.definition.scope == .reactor }.map(\.definition.name)
        #expect(names == StatKey.allCases.map(\.definition.name) + ["reactors"]
                + perReactor.map { "r0.\($0)" } + perReactor.map { "r1.\($0)" })
        #expect(stats.fields.first { $0.0 == "r0.requests" }?.1 == 2)
        #expect(stats.fields.first { $0.0 == "requests" }?.1 == 2)
    }

    @Test("the shutdown summary holds what accumulates over a run, not levels")
    func summaryIsCumulative() {
        let names = ServerStats(reactors: [ReactorStats()]).summary.map(\.0)
        #expect(names.contains("requests") && names.contains("connections_total") && names.contains("late_max_us"))
        #expect(!names.contains("connections") && !names.contains("inflight_requests"))
    }

    @Test("lateness: the worst delay in microseconds and the over-1/10/100 ms counts")
    func lateness() {
        let c = StatCounters()
        for nanos: UInt64 in [500_000, 1_000_000, 20_000_000, 150_000_000, 2_000] { c.recordLateness(nanos) }
        let s = c.snapshot
        #expect(s[.lateMaxMicros] == 150_000)
        #expect(s[.lateOver1ms] == 3 && s[.lateOver10ms] == 2 && s[.lateOver100ms] == 1)
        #expect(s[.lateReplies] == 5 && s[.lateTimerMicros] == 500 + 1_000 + 20_000 + 150_000 + 2)
    }

    @Test("lateness by part: sums for means, and the worst of each")
    func latenessParts() {
        let c = StatCounters()
        c.recordWriteDelay(300_000, replies: 4)
        c.recordWriteDelay(1_000_000, replies: 1)
        c.recordQueued(2_500_000)
        c.recordQueued(500_000)
        let s = c.snapshot
        #expect(s[.lateWriteMicros] == 4 * 300 + 1_000 && s[.lateWriteMaxMicros] == 1_000)
        #expect(s[.lateQueuedMicros] == 3_000 && s[.lateQueuedMaxMicros] == 2_500)
    }
}
