import Foundation
import AsyncComCore
import AsyncComProcess

/// The real `asynccom-server` binary (AsyncComProcess's `ServerProcess`, the one the tests use) started for a
/// run: on a free port, timed to its `listening on` lines, measured, stopped.
final class BenchServer {
    let process: ServerProcess
    let endpoint: Endpoint
    /// A plaintext endpoint of the same server for the STATS probe (the `endpoint` itself unless it is TLS).
    let statsEndpoint: Endpoint
    var pid: Int32 { process.pid }
    /// From starting the process to its `listening on` lines: mostly loading the map.
    let startupSeconds: Double

    /// The server binary next to this executable (both are built into the same folder).
    static func binaryPath() throws -> String { try executablePath("asynccom-server") }

    /// `privateStatsListener`: also listen on a port of its own for the STATS probe (as a TLS server always
    /// does), for a server that shares its port with others (`--share-port`).
    init(map: String, reactors: Int?, listen: String = "tcp://127.0.0.1:0", privateStatsListener: Bool = false,
         extraArguments: [String] = []) throws {
        // A TLS server also listens in plaintext on loopback, for the STATS probe.
        let listens = listen.hasPrefix("tls://") || privateStatsListener ? [listen, "tcp://127.0.0.1:0"] : [listen]
        var args = ["--map", map] + listens.flatMap { ["--listen", $0] } + ["--log-level", "warning"]
        if let reactors { args += ["--reactors", String(reactors)] }
        let started = Runner.monotonicSeconds()
        process = try ServerProcess(arguments: args + extraArguments, stderr: .inherited)
        // Loading a 10,000,000-entry map takes seconds; on a loaded machine many more.
        let endpoints = try process.listeningEndpoints(count: listens.count, seconds: 120)
        startupSeconds = Runner.monotonicSeconds() - started
        endpoint = endpoints[0]
        statsEndpoint = endpoints[endpoints.count - 1]
    }

    var cpuSeconds: Double { ProcessMetrics.cpuSeconds(pid: pid) ?? .nan }
    var peakRSS: Int { ProcessMetrics.peakRSS(pid: pid) ?? 0 }

    /// SIGTERM, then wait: the server drains and must exit 0.
    func stop() throws { try process.stop() }
}
