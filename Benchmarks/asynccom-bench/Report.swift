import Foundation

/// Median and range of one metric over a scenario's runs.
struct Spread: Sendable, Codable {
    var median: Double
    var min: Double
    var max: Double

    init(_ values: [Double]) {
        let sorted = values.sorted()
        precondition(!sorted.isEmpty)
        let n = sorted.count
        median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        min = sorted[0]
        max = sorted[n - 1]
    }
}

/// A scenario's figures over all its runs.
struct ScenarioReport: Sendable, Codable {
    var scenario: String
    var variant: String
    var runs: Int
    var commands: Int
    /// nil: the client's default.
    var batch: Int?
    var window: Int?
    var connections: Int?
    var reactors: String
    var wallSeconds: Spread
    var commandsPerSecond: Spread?
    var requestsPerSecond: Spread?
    var serverCPUPerMillion: Spread?
    var serverPeakRSSMiB: Spread?
    var clientPeakRSSMiB: Spread?
    /// Server and client peak RSS added, per run.
    var combinedPeakRSSMiB: Spread?
    var latenessP50Millis: Spread?
    var latenessP99Millis: Spread?
    var latenessMaxMillis: Spread?
    /// Map scenarios: the server's resident bytes per entry once loaded, and at the loader's peak.
    var mapBytesPerEntry: Spread?
    var loaderPeakBytesPerEntry: Spread?
    /// Lateness by part, each figure's median over the runs (`Runner.LatenessParts`).
    var latenessParts: [String: Spread]?
    /// Many-connections scenarios: accepts per second and server bytes per idle connection.
    var acceptsPerSecond: Spread?
    var rssPerConnection: Spread?
    var rssPerConnectionAfter: Spread?
    var connectionsRun: Int?
    /// Server processes sharing the port (as many client processes); 1 when one process held them all.
    var connectionProcesses: Int?
    /// `hostfloor`: CPU the host stole during a run, ms.
    var stolenMillis: Spread?
    var targets: [String: Bool]

    init(_ s: Scenario, commands: Int, results: [RunResult]) {
        scenario = s.name
        variant = s.variant
        runs = results.count
        self.commands = commands
        batch = s.batch
        window = s.window
        connections = s.connections
        reactors = s.reactors.map(String.init) ?? "cores"
        wallSeconds = Spread(results.map { $0.loadSeconds ?? $0.wallSeconds })
        targets = [:]
        if s.isMapMemory {
            mapBytesPerEntry = Spread(results.compactMap(\.mapBytesPerEntry))
            loaderPeakBytesPerEntry = Spread(results.compactMap(\.loaderPeakBytesPerEntry))
            serverPeakRSSMiB = Spread(results.map { Double($0.serverPeakRSS) / 1_048_576 })
        } else if s.hostFloorPeriodNanos > 0 {
            // No server, no client, no commands: lateness and what the host stole only.
            let late = results.compactMap(\.lateness)
            latenessP50Millis = Spread(late.map(\.p50))
            latenessP99Millis = Spread(late.map(\.p99))
            latenessMaxMillis = Spread(late.map(\.max))
            stolenMillis = Spread(results.compactMap(\.stolenMillis))
        } else if !s.isMapLoading {
            commandsPerSecond = Spread(results.map(\.commandsPerSecond))
            requestsPerSecond = Spread(results.map(\.requestsPerSecond))
            serverCPUPerMillion = Spread(results.map(\.serverCPUPerMillion))
            serverPeakRSSMiB = Spread(results.map { Double($0.serverPeakRSS) / 1_048_576 })
            clientPeakRSSMiB = Spread(results.map { Double($0.clientPeakRSS) / 1_048_576 })
            combinedPeakRSSMiB = Spread(results.map { Double($0.serverPeakRSS + $0.clientPeakRSS) / 1_048_576 })
            let late = results.compactMap(\.lateness)
            if late.count == results.count {
                latenessP50Millis = Spread(late.map(\.p50))
                latenessP99Millis = Spread(late.map(\.p99))
                latenessMaxMillis = Spread(late.map(\.max))
            }
            let accepts = results.compactMap(\.acceptsPerSecond)
            if !accepts.isEmpty {
                acceptsPerSecond = Spread(accepts)
                rssPerConnection = Spread(results.compactMap(\.rssPerConnection))
                rssPerConnectionAfter = Spread(results.compactMap(\.rssPerConnectionAfter))
                connectionsRun = results.compactMap(\.connections).min()
                connectionProcesses = results.compactMap(\.connectionProcesses).max()
            }
            let parts = results.compactMap(\.parts)
            if parts.count == results.count && !parts.isEmpty {
                let keys: [(String, KeyPath<Runner.LatenessParts, Double>)] = [
                    ("queued mean", \.queuedMeanMillis), ("queued max", \.queuedMaxMillis),
                    ("timer mean", \.timerMeanMillis), ("timer max", \.timerMaxMillis),
                    ("write mean", \.writeMeanMillis), ("write max", \.writeMaxMillis),
                    ("stolen", \.stolenMillis),
                ] + (parts.allSatisfy(\.hasClient) ? [
                    ("client p50", \.clientP50Millis), ("client p99", \.clientP99Millis), ("client max", \.clientMaxMillis),
                ] : [])
                latenessParts = Dictionary(uniqueKeysWithValues: keys.map { key in (key.0, Spread(parts.map { $0[keyPath: key.1] })) })
            }
        }
        for t in s.targets {
            let value: Double?
            switch t.metric {
            case .wallSeconds, .loadSeconds: value = wallSeconds.median
            case .commandsPerSecond: value = commandsPerSecond?.median
            case .serverCPUPerMillion: value = serverCPUPerMillion?.median
            case .serverPeakRSSMiB: value = serverPeakRSSMiB?.median
            case .combinedPeakRSSMiB: value = combinedPeakRSSMiB?.median
            case .latenessP99Millis: value = latenessP99Millis?.median
            case .mapBytesPerEntry: value = mapBytesPerEntry?.median
            case .requestsPerSecond: value = requestsPerSecond?.median
            case .rssPerConnectionBytes: value = rssPerConnection?.median
            }
            if let value { targets[t.text] = t.met(value) }
        }
    }
}

enum Report {
    static func number(_ v: Double) -> String {
        if v.isNaN { return "-" }
        if abs(v) >= 1_000_000 { return String(format: "%.2fM", v / 1_000_000) }
        if abs(v) >= 10_000 { return String(format: "%.0fk", v / 1_000) }
        if abs(v) >= 100 { return String(format: "%.0f", v) }
        if abs(v) >= 10 { return String(format: "%.1f", v) }
        return String(format: "%.3f", v)
    }

    static func cell(_ s: Spread?, showRange: Bool = true) -> String {
        guard let s else { return "-" }
        if !showRange || s.min == s.max { return number(s.median) }
        return "\(number(s.median)) (\(number(s.min))-\(number(s.max)))"
    }

    /// One line on stderr when a scenario's runs are done (the table comes once, at the end).
    static func progressLine(_ r: ScenarioReport) -> String {
        let name = r.variant.isEmpty ? r.scenario : "\(r.scenario) (\(r.variant))"
        var line = "\(name): done, median wall \(number(r.wallSeconds.median)) s"
        if let rate = r.commandsPerSecond { line += ", \(number(rate.median)) cmd/s" }
        return line
    }

    /// A Markdown table: medians, with min-max in parentheses.
    static func table(_ reports: [ScenarioReport]) -> String {
        let header = ["scenario", "runs", "wall s", "cmd/s", "req/s", "srv CPU s/M", "srv RSS MiB", "cli RSS MiB",
                      "late p50/p99/max ms"]
        var rows: [[String]] = []
        for r in reports {
            let name = r.variant.isEmpty ? r.scenario : "\(r.scenario) (\(r.variant))"
            let late: String
            if let p50 = r.latenessP50Millis, let p99 = r.latenessP99Millis, let mx = r.latenessMaxMillis {
                late = "\(number(p50.median)) / \(number(p99.median)) / \(number(mx.median))"
            } else {
                late = "-"
            }
            rows.append([name, String(r.runs), cell(r.wallSeconds), cell(r.commandsPerSecond, showRange: false),
                         cell(r.requestsPerSecond, showRange: false), cell(r.serverCPUPerMillion, showRange: false),
                         cell(r.serverPeakRSSMiB, showRange: false), cell(r.clientPeakRSSMiB, showRange: false), late])
        }
        var widths = header.map(\.count)
        for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            "| " + cells.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                .joined(separator: " | ") + " |"
        }
        var out = [line(header), "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|"]
        out += rows.map(line)
        for r in reports {
            if let p = r.latenessParts {
                func m(_ key: String) -> String { number(p[key]?.median ?? .nan) }
                let name = r.variant.isEmpty ? r.scenario : "\(r.scenario) (\(r.variant))"
                out.append("\(name): lateness by part, ms: server kernel queue \(m("queued mean")) mean / \(m("queued max")) max; "
                           + "due -> timer \(m("timer mean")) / \(m("timer max")); timer -> write \(m("write mean")) / \(m("write max")); "
                           + "in client before handled \(m("client p50")) p50 / \(m("client p99")) p99 / \(m("client max")) max; "
                           + "CPU stolen by the host during the job \(m("stolen")) ms")
            }
            if let stolen = r.stolenMillis, let late = r.latenessP99Millis {
                out.append("\(r.scenario): a bare sleeping thread per CPU woke \(number(late.median)) ms late at p99 (\(number(late.min))-\(number(late.max))) with no server running (anything else running counts); "
                           + "CPU stolen by the host during the run \(cell(stolen)) ms: no server answers closer to its due time on this host")
            }
            if let accepts = r.acceptsPerSecond, let rss = r.rssPerConnection {
                out.append("\(r.scenario) (\(r.variant)): \(cell(accepts)) accepts/s, server RSS \(cell(rss)) B per idle connection (\(cell(r.rssPerConnectionAfter)) once answered), "
                           + "\(r.connectionsRun.map(String.init) ?? "?") connections, all answered"
                           + ((r.connectionProcesses ?? 1) > 1 ? ", over \(r.connectionProcesses!) servers sharing the port (--share-port) and \(r.connectionProcesses!) client processes: the open-file limit (hard \(ManyConnections.raiseFileLimit(to: 0))) is per process" : ""))
            }
            if let resident = r.mapBytesPerEntry, let peak = r.loaderPeakBytesPerEntry {
                out.append("\(r.scenario): \(r.commands) entries, server resident \(cell(resident)) B/entry once loaded, "
                           + "loader peak \(cell(peak)) B/entry (minus a one-entry server's), load \(cell(r.wallSeconds)) s")
            }
        }
        var checks: [String] = []
        for r in reports {
            for (t, ok) in r.targets.sorted(by: { $0.key < $1.key }) {
                let name = r.variant.isEmpty ? r.scenario : "\(r.scenario) (\(r.variant))"
                checks.append("  \(ok ? "met   " : "MISSED") \(name): \(t)")
            }
        }
        if !checks.isEmpty { out += ["", "targets (on the medians):"] + checks }
        return out.joined(separator: "\n")
    }
}
