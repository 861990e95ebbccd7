#if canImport(Glibc)
import Glibc
#endif
import AsyncComClient
import Foundation
import AsyncComCore
import Logging

/// Per-command latencies, written by the engine's thread during the run and read after it has ended. Fed from
/// `onAnswer` (one call per answered request), not from a `CommandResult` per command: the observer must not
/// slow down the client's reply path it is measuring (a per-command callback costs about as much per command
/// as the rest of the reply path; `--per-command-results` measures with it).
final class LatencyRecorder: @unchecked Sendable {
    let nanos: UnsafeMutableBufferPointer<UInt64>
    /// Per command: the part of its latency spent in the client after the reply reached this host.
    let clientNanos: UnsafeMutableBufferPointer<UInt64>
    init(count: Int) {
        nanos = .allocate(capacity: count)
        nanos.initialize(repeating: 0)
        clientNanos = .allocate(capacity: count)
        clientNanos.initialize(repeating: 0)
    }
    deinit {
        nanos.deallocate()
        clientNanos.deallocate()
    }

    @inline(__always) func record(_ result: CommandResult) {
        store(sequence: result.sequence, latency: result.latencyNanos)
    }

    @inline(__always) func record(_ answer: AnsweredRequest) {
        for i in 0..<answer.count {
            let sequence = answer.sequence(at: i)
            store(sequence: sequence, latency: answer.latencyNanos)
            clientNanos[sequence] = answer.clientNanos
        }
    }

    @inline(__always) private func store(sequence: Int, latency: UInt64) {
        precondition(sequence >= 0 && sequence < nanos.count, "result sequence out of range")
        nanos[sequence] = latency
    }
}

/// The figures of one run; what a kind of run does not measure stays 0 or nil.
struct RunResult: Sendable {
    var wallSeconds: Double
    var commandsPerSecond = 0.0
    var requestsPerSecond = 0.0
    var serverCPUSeconds = 0.0
    var serverCPUPerMillion = 0.0
    var serverPeakRSS = 0
    var clientPeakRSS = 0
    /// Lateness beyond the modelled wait in ms (p50, p99, max); nil when not measured.
    var lateness: (p50: Double, p99: Double, max: Double)? = nil
    var loadSeconds: Double? = nil
    var parts: Runner.LatenessParts? = nil
    /// `Scenario.manyConnections`: connections accepted per second, server bytes per idle connection.
    var acceptsPerSecond: Double? = nil
    var rssPerConnection: Double? = nil
    var rssPerConnectionAfter: Double? = nil
    var connections: Int? = nil
    /// Server processes sharing the port (and as many client processes) the connections were spread over.
    var connectionProcesses: Int? = nil
    /// Server resident bytes per map entry once loaded, and at the loader's peak (`Scenario.isMapMemory`).
    var mapBytesPerEntry: Double? = nil
    var loaderPeakBytesPerEntry: Double? = nil
    /// `hostfloor`: CPU the hypervisor stole from the machine during the run (all CPUs), ms.
    var stolenMillis: Double? = nil
}

struct RunFailure: Error, CustomStringConvertible { let description: String }

enum Runner {
    /// The `q` quantile of ascending nanoseconds, in ms (the value at rank count x q, clamped; 0 when empty): the
    /// one rule of every percentile the bench reports.
    static func quantileMillis<T: BinaryInteger>(_ sorted: [T], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]) / 1e6
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Loads the map in this process and times it.
    static func runMapLoading(mapPath: String, expectedEntries: Int) throws -> RunResult {
        let start = monotonicSeconds()
        let map = try DeviceMap(contentsOfFile: mapPath)
        let seconds = monotonicSeconds() - start
        guard map.count == expectedEntries else {
            throw RunFailure(description: "map has \(map.count) entries, expected \(expectedEntries)")
        }
        return RunResult(wallSeconds: seconds, clientPeakRSS: ProcessMetrics.peakRSS(pid: getpid()) ?? 0, loadSeconds: seconds)
    }

    /// Starts the server with the map and with a one-entry map, and compares them: startup time, resident
    /// memory once listening (`VmRSS`) and its peak (`VmHWM`, reached while loading).
    static func runMapMemory(mapPath: String, emptyMapPath: String, entries: Int) throws -> RunResult {
        func measure(_ path: String) throws -> (seconds: Double, rss: Int, peak: Int) {
            let server = try BenchServer(map: path, reactors: 1)
            defer { try? server.stop() }
            return (server.startupSeconds, ProcessMetrics.currentRSS(pid: server.pid) ?? 0, server.peakRSS)
        }
        let empty = try measure(emptyMapPath)
        let full = try measure(mapPath)
        let n = Double(entries)
        let seconds = full.seconds - empty.seconds
        return RunResult(wallSeconds: seconds, serverPeakRSS: full.peak, loadSeconds: seconds,
                         mapBytesPerEntry: Double(full.rss - empty.rss) / n,
                         loaderPeakBytesPerEntry: Double(full.peak - empty.peak) / n)
    }

    /// `scenario.manyConnections` connections, one request each (`ManyConnections`: over several server and
    /// client processes when one process may not open that many files).
    static func runManyConnections(_ scenario: Scenario, mapPath: String, serverArguments: [String]) throws -> RunResult {
        let count = scenario.manyConnections
        let stolenBefore = ProcessMetrics.stolenSeconds()
        let f = try ManyConnections.run(mapPath: mapPath, reactors: scenario.reactors, serverArguments: serverArguments,
                                        count: count, item: "\(DataSet.deviceText(0)):\(scenario.data.commands[0])",
                                        waitNanos: 1_000_000_000, response: 1,
                                        spreadNanos: UInt64(scenario.manyConnectionsSpread * 1e9))
        var result = RunResult(wallSeconds: f.seconds, commandsPerSecond: Double(count) / f.seconds,
                               requestsPerSecond: Double(count) / f.seconds, serverCPUSeconds: f.serverCPUSeconds,
                               serverCPUPerMillion: f.serverCPUSeconds / (Double(count) / 1e6), serverPeakRSS: f.serverPeakRSS,
                               clientPeakRSS: f.clientPeakRSS, lateness: f.lateness, loadSeconds: nil,
                               acceptsPerSecond: f.acceptsPerSecond, rssPerConnection: f.rssPerConnection,
                               rssPerConnectionAfter: f.rssPerConnectionAfter, connections: count)
        result.connectionProcesses = f.servers
        result.parts = LatenessParts(stats: f.stats, client: f.clientNanos, stolenSeconds: ProcessMetrics.stolenSeconds() - stolenBefore)
        return result
    }

    static func runOnce(_ scenario: Scenario, mapPath: String, commandsPath: String, expectation: Expectation,
                        waits: [UInt64], serverArguments: [String] = [], perCommandResults: Bool = false,
                        scratch: String) async throws -> RunResult {
        var listen = "tcp://127.0.0.1:0"
        var tlsArguments: [String] = []
        var tlsFiles: TLSBench.Files?
        if scenario.tls {
            let files = try TLSBench.files(scratch: scratch)
            tlsFiles = files
            listen = "tls://127.0.0.1:0"
            tlsArguments = ["--tls-cert", files.certificate, "--tls-key", files.key]
        }
        let server = try BenchServer(map: mapPath, reactors: scenario.reactors, listen: listen,
                                       extraArguments: tlsArguments + serverArguments)
        defer { try? server.stop() }
        if scenario.isHandshakes, let tlsFiles, case .tls(_, let port) = server.endpoint {
            let rate = try TLSBench.handshakeRate(port: port, caFile: tlsFiles.ca, seconds: 5)
            return RunResult(wallSeconds: 5, commandsPerSecond: rate, requestsPerSecond: rate,
                             serverCPUSeconds: server.cpuSeconds, serverPeakRSS: server.peakRSS)
        }
        var configuration = ClientConfiguration(
            servers: [server.endpoint], batch: scenario.batch ?? ClientConfiguration.defaultBatch, window: scenario.window,
            connectionsPerServer: scenario.connections, requestTimeout: 60, retries: 2, connectTimeout: 10)
        configuration.tlsCAFile = tlsFiles?.ca
        var logger = Logger(label: "asynccom.bench")
        logger.logLevel = .error
        let client = AsyncComClient(configuration: configuration, logger: logger)

        // Big jobs with one fixed wait: lateness is the job summary's latency histogram minus the wait, and the
        // client runs exactly as the CLI runs it (no per-command observer or state; the recorder's 16 bytes per
        // command, 160 MB for 10,000,000, would count in the peak RSS measured). Otherwise latency per command,
        // judged against its own wait afterwards, with the lateness breakdown.
        var fixedWait: UInt64?
        if case .fixed(let w) = scenario.data.wait, scenario.measureLateness, !perCommandResults,
           expectation.commands > 2_000_000 { fixedWait = w }
        let recorder = scenario.measureLateness && fixedWait == nil ? LatencyRecorder(count: expectation.commands) : nil
        var onResult: ((CommandResult) -> Void)?
        var onAnswer: ((AnsweredRequest) -> Void)?
        if let recorder {
            if perCommandResults {
                onResult = { result in recorder.record(result) }
            } else {
                onAnswer = { answer in recorder.record(answer) }
            }
        }

        ProcessMetrics.resetPeakRSS(pid: getpid())
        let cpuBefore = server.cpuSeconds
        let stolenBefore = ProcessMetrics.stolenSeconds()
        // The generated commands file, streamed as the CLI streams it (it is in the page cache by now).
        let source = try FileCommandSource(path: commandsPath)
        let summary = try await client.run(source: source, onResult: onResult, onAnswer: onAnswer)
        let serverCPU = server.cpuSeconds - cpuBefore
        let stolen = ProcessMetrics.stolenSeconds() - stolenBefore
        let serverRSS = server.peakRSS
        let stats = try ServerStatsProbe.read(server.statsEndpoint)
        let clientRSS = ProcessMetrics.peakRSS(pid: getpid()) ?? 0
        try server.stop()

        // A benchmark of wrong answers is worthless: check every count and the sum.
        var problems: [String] = []
        if summary.sum != Int128(expectation.sum) { problems.append("sum \(summary.sum), expected \(expectation.sum)") }
        if summary.ok != expectation.ok { problems.append("ok \(summary.ok), expected \(expectation.ok)") }
        if summary.unknown != expectation.unknown { problems.append("unknown \(summary.unknown), expected \(expectation.unknown)") }
        if summary.malformed != expectation.malformed { problems.append("malformed \(summary.malformed), expected \(expectation.malformed)") }
        if summary.failed != 0 { problems.append("\(summary.failed) failed (\(summary.firstFailure ?? "?"))") }
        guard problems.isEmpty else {
            throw RunFailure(description: "\(scenario.label): wrong results: " + problems.joined(separator: "; "))
        }

        var lateness: (Double, Double, Double)?
        var parts: Runner.LatenessParts?
        if let recorder {
            lateness = latenessMillis(Array(recorder.nanos), scenario: scenario, waits: waits)
            parts = LatenessParts(stats: stats, client: Array(recorder.clientNanos), stolenSeconds: stolen)
        } else if let fixedWait {
            // Recorded in whole microseconds (at least 1): 3 significant digits.
            let h = summary.latencyHistogramMicros
            func late(_ micros: UInt64) -> Double { Double(micros * 1000 > fixedWait ? micros * 1000 - fixedWait : 0) / 1e6 }
            if h.totalCount > 0 { lateness = (late(h.valueAtPercentile(50)), late(h.valueAtPercentile(99)), late(h.max)) }
            parts = LatenessParts(stats: stats, client: [], stolenSeconds: stolen)  // the server's parts; no per-command client part
        }
        let commands = Double(summary.total)
        return RunResult(
            wallSeconds: summary.elapsedSeconds,
            commandsPerSecond: commands / summary.elapsedSeconds,
            requestsPerSecond: Double(summary.requests) / summary.elapsedSeconds,
            serverCPUSeconds: serverCPU,
            serverCPUPerMillion: serverCPU / (commands / 1e6),
            serverPeakRSS: serverRSS,
            clientPeakRSS: clientRSS,
            lateness: lateness,
            loadSeconds: nil,
            parts: parts)
    }

    /// Lateness by where it was spent: the server's parts from its STATS (means over the run and maxima), the
    /// client's from each reply's receive stamp. Parts not listed (the request's time in the client's send
    /// queue, the network) are what remains of the lateness.
    struct LatenessParts: Sendable, Codable {
        /// Request bytes in the server's kernel before a reactor read them.
        var queuedMeanMillis: Double
        var queuedMaxMillis: Double
        /// Due time -> the server's reply timer firing.
        var timerMeanMillis: Double
        var timerMaxMillis: Double
        /// Timer firing -> the reply's write.
        var writeMeanMillis: Double
        var writeMaxMillis: Double
        /// Reply arrival in the client's kernel -> its handling by the client (when recorded per command).
        var hasClient: Bool
        var clientP50Millis: Double
        var clientP99Millis: Double
        var clientMaxMillis: Double
        /// CPU time the hypervisor stole from the machine during the job (all CPUs), ms.
        var stolenMillis: Double

        init(stats: [String: UInt64], client: [UInt64], stolenSeconds: Double) {
            stolenMillis = stolenSeconds * 1000
            func ms(_ micros: UInt64?) -> Double { Double(micros ?? 0) / 1000 }
            func mean(_ sum: String, _ count: String) -> Double { ms(stats[sum]) / Double(max(stats[count] ?? 0, 1)) }
            queuedMeanMillis = mean("late_queued_us", "requests")
            queuedMaxMillis = ms(stats["late_queued_max_us"])
            timerMeanMillis = mean("late_timer_us", "late_replies")
            timerMaxMillis = ms(stats["late_max_us"])
            writeMeanMillis = mean("late_write_us", "late_replies")
            writeMaxMillis = ms(stats["late_write_max_us"])
            hasClient = !client.isEmpty
            let sorted = client.sorted()
            clientP50Millis = Runner.quantileMillis(sorted, 0.5)
            clientP99Millis = Runner.quantileMillis(sorted, 0.99)
            clientMaxMillis = Runner.quantileMillis(sorted, 1)
        }
    }

    /// Lateness = latency - the command's own modelled wait. Exact for batch 1 and for a fixed wait; with mixed
    /// waits in one batch it also counts the wait for the batch's slowest command.
    static func latenessMillis(_ latencies: [UInt64], scenario: Scenario, waits: [UInt64]) -> (Double, Double, Double) {
        var late = [Int64]()
        late.reserveCapacity(latencies.count)
        var lines = CommandLines(scenario.data)
        var seq = 0
        while let (_, kind) = lines.next() {
            let wait: UInt64
            switch kind {
            case .malformed: continue
            case .unknown: wait = 0
            case .known(let entry): wait = waits[entry]
            }
            late.append(Int64(bitPattern: latencies[seq]) - Int64(wait))
            seq += 1
        }
        late.sort()
        return (quantileMillis(late, 0.5), quantileMillis(late, 0.99), quantileMillis(late, 1))
    }
}
