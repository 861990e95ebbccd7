import Foundation
import AsyncComCore

/// The real `asynccom-server` binary as a child process: started on a free port, measured, stopped.
final class ServerProcess {
    struct Failure: Error, CustomStringConvertible { let description: String }

    let process = Process()
    let endpoint: Endpoint
    /// A plaintext endpoint of the same server for the STATS probe (the `endpoint` itself unless it is TLS).
    let statsEndpoint: Endpoint
    private let stdoutPipe = Pipe()

    var pid: Int32 { process.processIdentifier }
    /// From starting the process to its `listening on` line: mostly loading the map.
    private(set) var startupSeconds = 0.0

    /// The server binary next to this executable (both are built into the same folder).
    static func binaryPath() throws -> String {
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let path = me.deletingLastPathComponent().appendingPathComponent("asynccom-server").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw Failure(description: "\(path) not found: build it first with `swift build -c release`")
        }
        return path
    }

    init(map: String, reactors: Int?, listen: String = "tcp://127.0.0.1:0", extraArguments: [String] = []) throws {
        process.executableURL = URL(fileURLWithPath: try Self.binaryPath())
        // A TLS server also listens in plaintext on loopback, for the STATS probe.
        let listens = listen.hasPrefix("tls://") ? [listen, "tcp://127.0.0.1:0"] : [listen]
        var args = ["--map", map] + listens.flatMap { ["--listen", $0] } + ["--log-level", "warning"]
        if let reactors { args += ["--reactors", String(reactors)] }
        process.arguments = args + extraArguments
        process.standardOutput = stdoutPipe
        let started = Date()
        try process.run()
        // The server prints `listening on tcp://127.0.0.1:PORT` once it is bound.
        var line = ""
        let handle = stdoutPipe.fileHandleForReading
        let deadline = Date().addingTimeInterval(120)
        while line.filter({ $0 == "\n" }).count < listens.count {
            let data = handle.availableData
            if data.isEmpty {
                guard Date() < deadline, process.isRunning else {
                    throw Failure(description: "asynccom-server exited before listening (status \(process.terminationStatus))")
                }
                continue
            }
            line += String(decoding: data, as: UTF8.self)
        }
        startupSeconds = Date().timeIntervalSince(started)
        var endpoints: [Endpoint] = []
        for printed in line.split(separator: "\n").prefix(listens.count) {
            guard printed.hasPrefix("listening on ") else { throw Failure(description: "unexpected server output: \(printed)") }
            endpoints.append(try Endpoint(parsing: String(printed.dropFirst("listening on ".count))))
        }
        endpoint = endpoints[0]
        statsEndpoint = endpoints.last!
    }

    var cpuSeconds: Double { ProcessMetrics.cpuSeconds(pid: pid) ?? .nan }
    var peakRSS: Int { ProcessMetrics.peakRSS(pid: pid) ?? 0 }

    /// SIGTERM, then wait: the server drains and exits 0.
    func stop() throws {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw Failure(description: "asynccom-server did not exit cleanly (status \(process.terminationStatus))")
        }
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}
