@testable import AsyncComClient
import AsyncComCore
import AsyncComTestSupport
import Foundation
import Testing

@Suite struct JobStatsTests {
    @Test func sumIsExactBeyondInt64() {
        var stats = JobStats(serverCount: 2)
        stats.recordAnswer(server: 0, results: [.value(Int64.max), .value(Int64.max), .unknown], latencyNanos: 2_000_000)
        stats.recordAnswer(server: 1, results: [.value(-5)], latencyNanos: 4_000_000)
        stats.recordFailure(server: 1, commands: 3, reason: "timeout after 2 attempts")
        stats.recordFailure(server: 0, commands: 1, reason: "later reason")
        #expect(stats.sum == Int128(Int64.max) * 2 - 5)
        #expect(stats.ok == 3 && stats.unknown == 1 && stats.failed == 4 && stats.done == 8)
        #expect(stats.firstFailure == "timeout after 2 attempts")
        let summary = stats.summary(elapsedNanos: 2_000_000_000, malformed: 2, endpoints: [.default, .unix(path: "/tmp/s")],
                                    upAtEnd: [true, false])
        #expect(summary.sum == Int128(Int64.max) * 2 - 5)
        #expect(summary.malformed == 2)
        #expect(summary.commandsPerSecond == 4)
        #expect(summary.servers.count == 2)
        #expect(summary.servers[0].ok == 2 && summary.servers[0].unknown == 1 && summary.servers[0].failed == 1)
        #expect(summary.servers[1].ok == 1 && summary.servers[1].failed == 3 && !summary.servers[1].upAtEnd)
        #expect(summary.servers[1].endpoint == "unix:///tmp/s")
        #expect(!summary.allAnswered)
        // Three commands at 2 ms, one at 4 ms (HdrHistogram: 3 significant digits).
        #expect(summary.latency.count == 4)
        #expect(summary.latency.p50Nanos >= 1_990_000 && summary.latency.p50Nanos <= 2_010_000)
        #expect(summary.latency.maxNanos >= 3_990_000 && summary.latency.maxNanos <= 4_010_000)
    }

    @Test func jsonHasTheDocumentedKeys() {
        var stats = JobStats(serverCount: 1)
        stats.recordAnswer(server: 0, results: [.value(1), .value(2)], latencyNanos: 1_500_000)
        stats.recordFailure(server: 0, commands: 1, reason: "ERR \"quoted\"\nnewline")
        let json = stats.summary(elapsedNanos: 500_000_000, malformed: 0, endpoints: [.default], upAtEnd: [true]).json()
        for key in ["sum", "ok", "unknown", "failed", "malformed", "elapsed_s", "commands_per_s", "latency_ms", "p50", "p90",
                    "p99", "max", "servers", "retries", "reconnects", "first_failure"] {
            #expect(json.contains("\"\(key)\":"), "missing \(key) in \(json)")
        }
        #expect(json.hasPrefix("{\"sum\":3,\"ok\":2,\"unknown\":0,\"failed\":1,\"malformed\":0,\"elapsed_s\":0.500000,\"commands_per_s\":6.0,"))
        #expect(json.contains("\"first_failure\":\"ERR \\\"quoted\\\"\\nnewline\""))
        #expect(!json.contains("\n"))
    }

    @Test func fixedDecimals() {
        #expect(JSONText.fixed(1.0005, decimals: 3) == "1.001" || JSONText.fixed(1.0005, decimals: 3) == "1.000")
        #expect(JSONText.fixed(0, decimals: 2) == "0.00")
        #expect(JSONText.fixed(12.5, decimals: 0) == "13" || JSONText.fixed(12.5, decimals: 0) == "12")
        #expect(JSONText.fixed(-3.25, decimals: 2) == "-3.25")
        #expect(JSONText.fixed(0.0001, decimals: 3) == "0.000")
        #expect(JSONText.fixed(.infinity, decimals: 3) == "0")
        #expect(JSONString.quoted("a\u{01}b\n") == "\"a\\u0001b\\n\"")
    }
}

@Suite struct CommandSourceTests {
    @Test func arraySourceParsesAndCountsMalformed() throws {
        var source = ArrayCommandSource(lines: ["1.2.3.4:foo", "", "# comment", "nonsense", "[::1]:bar", "1.2.3.4:"])
        var items: [String] = []
        while let e = try source.next() { items.append(e.item) }
        #expect(items == ["1.2.3.4:foo", "[::1]:bar"])
        #expect(source.malformedCount == 2)
    }

    @Test func memorySourceReportsLineNumbers() throws {
        let text = "1.2.3.4:foo\r\nbad\n\n5.6.7.8:bar"
        let reported = Reported()
        var source = MemoryCommandSource(bytes: Array(text.utf8), name: "mem", onMalformed: { reported.errors.append($0) })
        var lines: [Int] = []
        while let e = try source.next() { lines.append(e.line) }
        #expect(lines == [1, 4])
        #expect(source.malformedCount == 1)
        #expect(reported.errors.map(\.line) == [2])
        #expect(reported.errors.first?.file == "mem")
    }

    @Test func fileSourceStreamsAFile() throws {
        let path = "/tmp/asynccom-client-test-\(getpid()).txt"
        try writeFile(path, "10.0.0.1:a\nbroken line\n10.0.0.2:b\n")
        defer { unlink(path) }
        let reported = Reported()
        var source = try FileCommandSource(path: path, onMalformed: { reported.errors.append($0) })
        var items: [String] = []
        while let e = try source.next() { items.append(e.item) }
        #expect(items == ["10.0.0.1:a", "10.0.0.2:b"])
        #expect(source.malformedCount == 1)
        #expect(reported.errors.first?.description.hasPrefix("\(path):2: ") == true)
        #expect(throws: InputFileError.self) { try FileCommandSource(path: "/nonexistent/commands.txt") }
        #expect(throws: InputFileError.self) { try FileCommandSource(path: "/tmp") }
    }
}

final class Reported: @unchecked Sendable {
    var errors: [InputFileError] = []
}
