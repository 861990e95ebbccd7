// The README's "Using asynccom as a library" examples, verbatim: each region between `// README example NAME`
// and `// README example end` must equal a ```swift block of README.md (LibraryDocTests checks it, and runs
// them). Only the two products a user depends on are imported: what the examples need must be re-exported.
import AsyncComClient
import AsyncComServer

// README example run
/// Runs every command of a commands file and prints the outcome.
func runJob(server: Endpoint, file: String) async throws -> JobSummary {
    let client = AsyncComClient(configuration: ClientConfiguration(servers: [server]))
    let summary = try await client.run(source: try FileCommandSource(path: file))
    print("sum \(summary.sum): \(summary.ok) ok, \(summary.unknown) unknown, \(summary.failed) failed")
    return summary
}
// README example end

// README example results
/// Prints each result in input order as it arrives; stops at the first failure.
func printResults(server: Endpoint, file: String) async throws -> Int {
    let client = AsyncComClient(configuration: ClientConfiguration(servers: [server], ordered: true))
    let stream = client.results(source: try FileCommandSource(path: file))
    var printed = 0
    for await result in stream {
        switch result.outcome {
        case .value(let value): print("\(result.entry.item) \(value)")
        case .unknown: print("\(result.entry.item) unknown")
        case .failed(let reason):
            print("\(result.entry.item) failed: \(reason)")
            return printed  // leaving the loop early cancels the job
        }
        printed += 1
    }
    let summary = try await stream.summary()
    print("sum \(summary.sum)")
    return printed
}
// README example end

// README example stop
/// Runs a job for at most `seconds`, then ends it with what it has.
func runForAtMost(_ seconds: Double, server: Endpoint, file: String) async throws -> JobSummary {
    let client = AsyncComClient(configuration: ClientConfiguration(servers: [server]))
    let interruption = JobInterruption()
    let timer = Task {
        try await Task.sleep(for: .seconds(seconds))
        interruption.interrupt()
    }
    defer { timer.cancel() }
    let summary = try await client.run(source: try FileCommandSource(path: file), interruption: interruption)
    if summary.interrupted { print("stopped: \(summary.notAnswered) commands not answered") }
    return summary
}
// README example end

// README example server
/// Starts a server in this process on a device map; it listens when `start()` returns.
func startServer(mapFile: String) throws -> (server: Server, endpoint: Endpoint) {
    let map = try DeviceMap(contentsOfFile: mapFile)
    let configuration = ServerConfiguration(map: map, endpoints: [.tcp(host: "127.0.0.1", port: 0)])
    let server = Server(configuration: configuration)
    let endpoints = try server.start()  // port 0: the port taken is in the endpoint returned
    return (server, endpoints[0])
}

/// Drains what is in flight, then stops.
func stopServer(_ server: Server) {
    server.beginShutdown()
    server.waitUntilStopped()
}
// README example end
