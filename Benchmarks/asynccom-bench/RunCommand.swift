import ArgumentParser
import Foundation
import AsyncComCLI
import AsyncComCore

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandLineTool.configuration(
        "run", subcommandOf: "asynccom-bench",
        abstract: "Run benchmark scenarios against the real server and print a table of medians.",
        usage: "asynccom-bench run [<options>] [<scenarios> ...]",
        discussion: """
            Each run starts a fresh asynccom-server (found next to this executable) on a free port, drives it with \
            the client engine in this process, and checks the sum and every count against what the data set \
            implies: a wrong answer fails the run. Data sets are generated into --scratch. Reported per scenario: \
            medians (min-max) of wall time, commands/s, requests/s, server CPU seconds per million commands, \
            server and client peak RSS, and how late replies came beyond their modelled wait (p50/p99/max). \
            A line on stderr follows each run; the table (or --json) is printed once, on stdout, at the end.

            Scenarios:
            \(Scenarios.all().map { "  \($0.label): \($0.summary)" + ($0.targets.isEmpty ? "" : "; target " + $0.targets.map(\.text).joined(separator: ", ")) }.joined(separator: "\n"))

            Build both executables in release first:
              swift build -c release && .build/release/asynccom-bench run seed inflight
            """
    )

    @Argument(help: "Scenarios to run (default: all).")
    var scenarios: [String] = []

    @Option(help: "Only the variants whose description contains this text (e.g. 'batch 16').")
    var variant: String?

    @Option(help: "Runs per scenario (default: each scenario's own, 3 to 5).")
    var runs: Int?

    @Option(help: ArgumentHelp("Folder for generated data sets, certificates and helper binaries; created 0700 if missing. (default: $TMPDIR/asynccom-bench-UID, /tmp without TMPDIR: here \(Scratch.defaultPath))", valueName: "dir"))
    var scratch: String?

    @Flag(help: "Print the results as one JSON document instead of a table.")
    var json = false

    @Flag(help: "Measure lateness through a CommandResult per command (onResult) instead of one call per answered request (onAnswer): shows what a per-command consumer costs the client's reply path.")
    var perCommandResults = false

    @Option(name: .customLong("server-arg"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("An extra argument for asynccom-server, to compare its settings; repeatable (e.g. --server-arg=--reply-coalescing --server-arg=0.001).", valueName: "arg"))
    var serverArguments: [String] = []

    @Option(help: "Python with flask and gunicorn for the http scenario's Flask row (skipped when they are missing).")
    var python = "python3"

    func run() async throws {
        let all = Scenarios.all()
        let names = Set(all.map(\.name))
        for s in scenarios where !names.contains(s) {
            throw ValidationError("unknown scenario '\(s)' (known: \(names.sorted().joined(separator: ", ")))")
        }
        let selected = all.filter {
            (scenarios.isEmpty || scenarios.contains($0.name)) && (variant.map($0.variant.contains) ?? true)
        }
        if selected.isEmpty {
            // An empty table and exit 0 read as "nothing to see" (found from outside: --variant defaults with hostfloor).
            throw ValidationError("no scenario matches \(scenarios.isEmpty ? "" : scenarios.joined(separator: ", ") + " ")"
                                  + "with --variant '\(variant ?? "")'; variants are matched as text, e.g. 'defaults' or 'batch 16'")
        }
        if let runs, runs < 1 { throw ValidationError("--runs must be at least 1") }
        _ = try BenchServer.binaryPath()
        let scratch = try Scratch.prepare(self.scratch)

        var reports: [ScenarioReport] = []
        for scenario in selected {
            if let load = scenario.http {
                if load.target == .flask && !HTTPBench.flaskAvailable(python: python) {
                    log("\(scenario.label): skipped (\(python) has no flask and gunicorn; see --python)")
                    continue
                }
                reports.append(try await measure(scenario, commands: 0) {
                    try HTTPBench.runOnce(scenario, scratch: scratch, python: python)
                })
                continue
            }
            if scenario.hostFloorPeriodNanos > 0 {
                reports.append(try await measure(scenario, commands: 0) {
                    HostFloor.run(seconds: 5, periodNanos: scenario.hostFloorPeriodNanos)
                })
                continue
            }
            let dir = "\(scratch)/\(scenario.name)"
            let commandsFile = !scenario.isMapMemory && !scenario.isMapLoading && scenario.manyConnections == 0
            try DataSet.write(scenario.data, to: dir, commands: commandsFile)
            let expectation = scenario.isMapMemory ? Expectation(ok: scenario.data.mapLines)
                : scenario.manyConnections > 0 ? Expectation(ok: scenario.manyConnections) : DataSet.expectation(scenario.data)
            var waits: [UInt64] = []
            if scenario.measureLateness {
                waits.reserveCapacity(scenario.data.mapLines)
                DataSet.forEachMapEntry(scenario.data) { _, _, _, w in waits.append(w) }
            }
            reports.append(try await measure(scenario, commands: expectation.commands) {
                if scenario.manyConnections > 0 {
                    return try Runner.runManyConnections(scenario, mapPath: dir + "/map.txt", serverArguments: serverArguments)
                } else if scenario.isMapMemory {
                    let empty = dir + "/one-entry-map.txt"
                    try "10.0.0.1:cmd0:1:1\n".write(toFile: empty, atomically: false, encoding: .utf8)
                    return try Runner.runMapMemory(mapPath: dir + "/map.txt", emptyMapPath: empty, entries: scenario.data.mapLines)
                } else if scenario.isMapLoading {
                    return try Runner.runMapLoading(mapPath: dir + "/map.txt", expectedEntries: scenario.data.mapLines)
                }
                return try await Runner.runOnce(
                    scenario, mapPath: dir + "/map.txt", commandsPath: dir + "/commands.txt",
                    expectation: expectation, waits: waits, serverArguments: serverArguments + scenario.serverArguments,
                    perCommandResults: perCommandResults, scratch: scratch)
            })
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(reports), as: UTF8.self))
        } else {
            print(Report.table(reports))
            let http = HTTPBench.comparisons(reports)
            if !http.isEmpty { print((["", "http comparisons (medians, same run):"] + http).joined(separator: "\n")) }
        }
    }

    /// Runs `scenario` its number of times (or `--runs`) with `once`, a line on stderr per run and at the end.
    private func measure(_ scenario: Scenario, commands: Int, _ once: () async throws -> RunResult) async throws -> ScenarioReport {
        var results: [RunResult] = []
        let count = runs ?? scenario.runs
        for i in 1...count {
            log("\(scenario.label): run \(i)/\(count)")
            results.append(try await once())
        }
        let report = ScenarioReport(scenario, commands: commands, results: results)
        log(Report.progressLine(report))
        return report
    }

    private func log(_ s: String) {
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }
}
