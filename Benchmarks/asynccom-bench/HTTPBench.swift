import Foundation

/// The `http` scenario: `POST /v1/commands` driven by wrk (Debian's `wrk`, a Lua script for the body) against
/// asynccom-server's `--http-listen`, side by side with the same load on a bare C evhttp server (compiled here
/// from Benchmarks/http/bare-evhttp.c) and, when Python with Flask and gunicorn is found, on the original's REST
/// design (Benchmarks/http/flask_app.py under gunicorn, 2 gthread workers).
struct HTTPLoad: Sendable {
    enum Target: String, Sendable { case asynccom, bareEvhttp, flask }
    var target: Target
    var connections: Int
    /// Every item's wait in the map: 0 or 1 s.
    var waitSeconds: Int
    var itemsPerRequest = 16
    var seconds = 5
    var serverArguments: [String] = []
}

enum HTTPBench {
    static func scenarios() -> [Scenario] {
        func scenario(_ variant: String, _ summary: String, _ load: HTTPLoad) -> Scenario {
            var s = Scenario(name: "http", variant: variant, summary: summary, data: DataSetSpec())
            s.http = load
            s.batch = load.itemsPerRequest
            s.connections = load.connections
            s.measureLateness = false
            return s
        }
        let zero = HTTPLoad(target: .asynccom, connections: 50, waitSeconds: 0)
        var bare = zero
        bare.target = .bareEvhttp
        var flask = zero
        flask.target = .flask
        // 30 s: each connection completes about one request per second, and a 10 s window would end with most of
        // them between two replies (9 of 10 possible, before counting the 10,000 connects).
        var many = HTTPLoad(target: .asynccom, connections: 10_000, waitSeconds: 1, seconds: 30)
        // A user who wants 10,000 connections raises --max-connections (default 4096).
        many.serverArguments = ["--max-connections", "20000"]
        var manyScenario = scenario("wait 1 s, 10,000 connections, --max-connections 20000",
                                    "POST /v1/commands, 16 items of 1 s, 10,000 keep-alive connections (wrk, 30 s)", many)
        manyScenario.targets = [Target(metric: .requestsPerSecond, bound: 9_000, atMost: false)]
        return [
            scenario("wait 0, 16 items, 50 connections", "POST /v1/commands, 16 items, wait 0, 50 keep-alive connections (wrk, 5 s)", zero),
            scenario("bare C evhttp, same load", "the libevent limit: one event base, a fixed reply, no parsing (Benchmarks/http/bare-evhttp.c)", bare),
            scenario("Flask + gunicorn, same load", "the original's REST design (Benchmarks/http/flask_app.py, gunicorn -w 2 -k gthread); needs --python with flask and gunicorn", flask),
            manyScenario,
        ]
    }

    /// Whether the Flask row can run with `python`.
    static func flaskAvailable(python: String) -> Bool {
        (try? run(python, ["-c", "import flask, gunicorn"]))?.status == 0
    }

    static func runOnce(_ scenario: Scenario, scratch: String, python: String) throws -> RunResult {
        guard let load = scenario.http else { throw RunFailure(description: "not an http scenario") }
        let dir = scratch + "/http"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // 256 devices x foo, every wait the same; each request asks 16 of them.
        let map = dir + "/map-wait\(load.waitSeconds).txt"
        var text = ""
        for d in 0..<256 { text += "10.1.0.\(d):foo:1:\(load.waitSeconds)\n" }
        try text.write(toFile: map, atomically: true, encoding: .utf8)
        let items = (0..<load.itemsPerRequest).map { "\"10.1.0.\($0 * 7 % 256):foo\"" }.joined(separator: ",")
        let body = "{\"items\":[\(items)]}"
        let expected = "{\"results\":[" + Array(repeating: "1", count: load.itemsPerRequest).joined(separator: ",")
            + "],\"sum\":\(load.itemsPerRequest),\"unknown\":0}"
        let lua = dir + "/post.lua"
        try """
            wrk.method = "POST"
            wrk.body = '\(body)'
            wrk.headers["Content-Type"] = "application/json"
            """.write(toFile: lua, atomically: true, encoding: .utf8)

        let server = try HTTPServerUnderTest(load, map: map, scratch: dir, python: python)
        defer { server.stop() }
        // One request first: the reply must be the right one (wrk only counts statuses).
        let check = try run("curl", ["-s", "--max-time", "30", "-H", "Content-Type: application/json", "-d", body,
                                     "http://127.0.0.1:\(server.port)/v1/commands"])
        guard check.output.trimmingCharacters(in: .whitespacesAndNewlines) == expected else {
            throw RunFailure(description: "\(load.target.rawValue) answered \(check.output) instead of \(expected)")
        }
        let cpuBefore = server.cpuSeconds
        let wrk = try run("wrk", ["-t2", "-c\(load.connections)", "-d\(load.seconds)s", "--timeout", "10s", "-s", lua,
                                  "http://127.0.0.1:\(server.port)/v1/commands"])
        guard wrk.status == 0, let rps = field(wrk.output, "Requests/sec:") else {
            throw RunFailure(description: "wrk failed: \(wrk.output)")
        }
        if let bad = wrk.output.split(separator: "\n").first(where: { $0.contains("Non-2xx") }) {
            throw RunFailure(description: "\(load.target.rawValue): \(bad)")
        }
        // gunicorn's work is in its workers, not the process we started: no CPU or RSS figure for that row.
        let measured = load.target != .flask
        let cpu = measured ? server.cpuSeconds - cpuBefore : .nan
        let commands = rps * Double(load.itemsPerRequest) * Double(load.seconds)
        return RunResult(wallSeconds: Double(load.seconds), commandsPerSecond: rps * Double(load.itemsPerRequest),
                         requestsPerSecond: rps, serverCPUSeconds: cpu,
                         serverCPUPerMillion: commands > 0 ? cpu / commands * 1e6 : .nan,
                         serverPeakRSS: measured ? server.peakRSS : 0)
    }

    /// After the table: how the http rows compare (targets: asynccom >= 85% of bare evhttp, >= 8x Flask).
    static func comparisons(_ reports: [ScenarioReport]) -> [String] {
        func rps(_ variantPrefix: String) -> Double? {
            reports.first { $0.scenario == "http" && $0.variant.hasPrefix(variantPrefix) }?.requestsPerSecond?.median
        }
        guard let ours = rps("wait 0") else { return [] }
        var out: [String] = []
        if let bare = rps("bare C") {
            let ratio = ours / bare
            out.append("  \(ratio >= 0.85 ? "met   " : "MISSED") http: wait 0 req/s >= 85% of bare C evhttp: \(Int(ratio * 100))% (\(Report.number(ours)) vs \(Report.number(bare)))")
        }
        if let flask = rps("Flask") {
            let ratio = ours / flask
            out.append("  \(ratio >= 8 ? "met   " : "MISSED") http: wait 0 req/s >= 8x Flask + gunicorn: \(String(format: "%.1f", ratio))x (\(Report.number(ours)) vs \(Report.number(flask)))")
        }
        return out
    }

    static func field(_ output: String, _ name: String) -> Double? {
        for line in output.split(separator: "\n") where line.contains(name) {
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }

    struct Output { var status: Int32; var output: String }

    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) throws -> Output {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [tool] + arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Output(status: p.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    /// The repository's root (where Package.swift is), from this executable's path.
    static func packageRoot() throws -> String {
        var url = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Benchmarks/http/bare-evhttp.c").path) {
                return url.path
            }
            url.deleteLastPathComponent()
        }
        throw RunFailure(description: "Benchmarks/http/bare-evhttp.c not found above the executable")
    }
}

/// One HTTP server for a run: asynccom-server, the bare evhttp program, or gunicorn.
final class HTTPServerUnderTest {
    let process = Process()
    let port: UInt16
    private let output = Pipe()

    init(_ load: HTTPLoad, map: String, scratch: String, python: String) throws {
        let root = try HTTPBench.packageRoot()
        var flaskPort: UInt16 = 0
        switch load.target {
        case .asynccom:
            process.executableURL = URL(fileURLWithPath: try BenchServer.binaryPath())
            process.arguments = ["--map", map, "--listen", "tcp://127.0.0.1:0", "--http-listen", "tcp://127.0.0.1:0",
                                 "--log-level", "warning"] + load.serverArguments
        case .bareEvhttp:
            let binary = scratch + "/bare-evhttp"
            let source = root + "/Benchmarks/http/bare-evhttp.c"
            let built = try HTTPBench.run("cc", ["-O2", "-o", binary, source, "-levent"])
            guard built.status == 0 else { throw RunFailure(description: "cc bare-evhttp.c: \(built.output)") }
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["0"]
        case .flask:
            // gunicorn prints nothing parseable on stdout: pick a port, then poll until it answers.
            let free = try HTTPBench.run("python3", ["-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"])
            guard let p = UInt16(free.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw RunFailure(description: "no free port: \(free.output)")
            }
            flaskPort = p
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = ["-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "4", "-b", "127.0.0.1:\(p)",
                                 "--chdir", root + "/Benchmarks/http", "--log-level", "warning", "flask_app:app"]
            process.environment = ProcessInfo.processInfo.environment.merging(["ASYNCCOM_MAP": map]) { $1 }
        }
        process.standardOutput = output
        // Not our stderr: a child left behind would hold the pipe of whoever reads the bench's output.
        process.standardError = FileHandle.nullDevice
        try process.run()
        if load.target == .flask {
            port = flaskPort
            let deadline = Date().addingTimeInterval(30)
            while (try? HTTPBench.run("curl", ["-s", "-o", "/dev/null", "http://127.0.0.1:\(port)/"]))?.status != 0 {
                guard Date() < deadline, process.isRunning else { throw RunFailure(description: "gunicorn did not start") }
                usleep(100_000)
            }
            return
        }
        // asynccom: "listening for HTTP on tcp://127.0.0.1:PORT" (after its protocol v1 line); bare: "listening on PORT".
        var text = ""
        let handle = output.fileHandleForReading
        let marker = load.target == .asynccom ? "listening for HTTP on tcp://127.0.0.1:" : "listening on "
        let deadline = Date().addingTimeInterval(60)
        while true {
            if let range = text.range(of: marker), let end = text[range.upperBound...].firstIndex(of: "\n"),
               let p = UInt16(text[range.upperBound..<end]) {
                port = p
                return
            }
            let data = handle.availableData
            guard !data.isEmpty || (Date() < deadline && process.isRunning) else {
                throw RunFailure(description: "\(load.target.rawValue) did not start: \(text)")
            }
            text += String(decoding: data, as: UTF8.self)
        }
    }

    var cpuSeconds: Double { ProcessMetrics.cpuSeconds(pid: process.processIdentifier) ?? .nan }
    var peakRSS: Int { ProcessMetrics.peakRSS(pid: process.processIdentifier) ?? 0 }

    /// SIGTERM, then SIGKILL after 5 s (a child may have been spawned with SIGTERM blocked).
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
