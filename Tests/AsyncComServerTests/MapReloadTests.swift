import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Testing

/// Replaces the file at `path` in one step (write a sibling, rename it over), as a deployment tool would: the
/// server never reads a half-written map.
func replaceFile(_ path: String, _ text: String) throws {
    let staging = path + ".new"
    try writeFile(staging, text)
    guard rename(staging, path) == 0 else { throw TestFailure("rename \(staging): errno \(errno)") }
}

/// The `map_generation=` of a HELLO line.
func helloGeneration(_ hello: String) -> UInt64? {
    hello.split(separator: " ").first { $0.hasPrefix("map_generation=") }.flatMap { UInt64($0.dropFirst(15)) }
}

/// An in-process server (2 reactors, port 0) on a map loaded from a temporary file, so it can be reloaded.
func reloadableServer(_ mapText: String, configure: (inout ServerConfiguration) throws -> Void = { _ in }) throws -> (Server, TempFile, UInt16) {
    let file = try TempFile(mapText)
    var configuration = ServerConfiguration(
        map: try DeviceMap(contentsOfFile: file.path), mapFile: file.path,
        endpoints: [.tcp(host: "127.0.0.1", port: 0)], reactors: 2)
    try configure(&configuration)
    let server = Server(configuration: configuration)
    let endpoints = try server.start()
    guard case .tcp(_, let port) = endpoints[0] else { throw TestFailure("no port") }
    return (server, file, port)
}

@Suite("Server: map reload", .machineSlot(timeLimit: .minutes(3)))
struct MapReloadTests {
    @Test("reloadMap: requests read after the switch see the new map, earlier ones keep their answer; generation up")
    func reloadSwitches() async throws {
        try await blocking {
            let (server, file, port) = try reloadableServer("10.0.0.1:a:1:0\n10.0.0.1:slow:10:1\n")
            defer { file.remove(); server.beginShutdown(); server.waitUntilStopped() }
            let client = try LineClient(port: port)
            #expect(helloGeneration(try client.request("HELLO 1")) == 1)
            #expect(try client.request("REQ 1 10.0.0.1:a 10.0.0.2:b") == "RES 1 1 ?")
            try client.send("REQ 2 10.0.0.1:slow\n")  // answered from generation 1, due in 1 s
            #expect(try eventually { try client.stats()["inflight_requests"] == 1 })

            try replaceFile(file.path, "10.0.0.1:a:100:0\n10.0.0.2:b:200:0\n10.0.0.1:slow:20:0\n")
            let report = try server.reloadMap()
            #expect(report.generation == 2)
            #expect(report.entries == 3)
            #expect(server.configuration.map.count == 3)
            #expect(try client.request("REQ 3 10.0.0.1:a 10.0.0.2:b") == "RES 3 100 200")
            #expect(try client.request("REQ 4 10.0.0.1:slow") == "RES 4 20")  // new wait: at once
            #expect(try client.line() == "RES 2 10")  // the old answer, at its old due time
            #expect(helloGeneration(try client.request("HELLO 1")) == 2)
            let s = try client.stats()
            #expect(s["map_generation"] == 2)
            #expect(s["reload_failures"] == 0)
            // A connection on each reactor answers from the new map (every reactor switched).
            var reactorsSeen = Set<String>()
            for _ in 0..<40 where reactorsSeen.count < 2 {
                let c = try LineClient(port: port)
                let hello = try c.request("HELLO 1")
                reactorsSeen.insert(String(hello.split(separator: " ").first { $0.hasPrefix("reactor=") } ?? ""))
                #expect(helloGeneration(hello) == 2)
                #expect(try c.request("REQ 5 10.0.0.2:b") == "RES 5 200")
            }
            #expect(reactorsSeen.count == 2)
        }
    }

    @Test("a bad map keeps the old one: FILE:LINE: message, reload_failures, generation unchanged, still serving")
    func badReloadKeepsServing() async throws {
        try await blocking {
            let (server, file, port) = try reloadableServer("10.0.0.1:a:1:0\n")
            defer { file.remove(); server.beginShutdown(); server.waitUntilStopped() }
            let client = try LineClient(port: port)

            try replaceFile(file.path, "10.0.0.1:a:2:0\n10.0.0.1:b:3:0\n10.0.0.1:c:oops:0\n")
            #expect {
                try server.reloadMap()
            } throws: { error in
                "\(error)".hasPrefix("\(file.path):3: ") && "\(error)".contains("oops")
            }
            let outcome = server.reload()  // the same through the reload-everything entry point
            #expect(outcome.count == 1 && outcome[0].input == "map")
            if case .success = outcome[0].result { Issue.record("a bad map was accepted") }
            unlink(file.path)
            #expect(throws: ServerError.self) { try server.reloadMap() }  // missing file: refused too

            #expect(try client.request("REQ 1 10.0.0.1:a 10.0.0.1:b") == "RES 1 1 ?")
            let s = try client.stats()
            #expect(s["reload_failures"] == 3)
            #expect(s["map_generation"] == 1)
            #expect(helloGeneration(try client.request("HELLO 1")) == 1)
            // And a good one after the bad ones goes through.
            try writeFile(file.path, "10.0.0.1:a:5:0\n")
            #expect(try server.reloadMap().generation == 2)
            #expect(try client.request("REQ 2 10.0.0.1:a") == "RES 2 5")
        }
    }

    @Test("the old map is freed once every reactor has switched; a map not loaded from a file cannot be reloaded")
    func oldMapFreed() async throws {
        try await blocking {
            weak var first: DeviceMap?
            let server: Server = try {
                let map = try TestServer.map("10.0.0.1:a:1:0\n")
                first = map
                return Server(configuration: ServerConfiguration(
                    map: map, endpoints: [.tcp(host: "127.0.0.1", port: 0)], reactors: 2))
            }()
            let endpoints = try server.start()
            defer { server.beginShutdown(); server.waitUntilStopped() }
            guard case .tcp(_, let port) = endpoints[0] else { throw TestFailure("no port") }
            #expect(throws: ServerError.self) { try server.reloadMap() }
            let client = try LineClient(port: port)
            #expect(try client.request("REQ 1 10.0.0.1:a") == "RES 1 1")
            #expect(first != nil)
            #expect(server.replaceMap(with: try TestServer.map("10.0.0.1:a:2:0\n")) == 2)
            #expect(first == nil, "the start-up map is still referenced after every reactor switched")
            #expect(try client.request("REQ 2 10.0.0.1:a") == "RES 2 2")
        }
    }
}

@Suite("Server: SIGHUP reload under load", .serialized, .machineSlot(timeLimit: .minutes(3)))
struct MapReloadUnderLoadTests {
    @Test("1,000,000 commands while SIGHUP reloads the map 10 times: exact sum, no connection lost, nothing re-sent",
          .machineSlot(timeLimit: .minutes(3), cpuBound: true))
    func reloadTenTimesUnderLoad() async throws {
        try await blocking {
            let job = try FaultJob(count: 1_000_000, wait: "0.5")
            defer { job.remove() }
            let baseMap = try readText(job.map.path)
            // Devices the job does not use: more of them each generation, their responses changed each time.
            func mapText(generation g: Int) -> String {
                var text = baseMap + "# generation \(g)\n"
                for d in 0..<(100 * g) { text += "10.200.\(d / 256).\(d % 256):z:\(g * 1000 + d):0\n" }
                return text
            }
            try replaceFile(job.map.path, mapText(generation: 1))
            let server = try job.startServer(reactors: 2)
            let port = try server.listeningPort()
            let observer = try LineClient(port: port)
            let client = try job.startClient(port: port)
            var lastConnections: UInt64 = 0
            for g in 2...11 {
                #expect(try eventually(within: 60) { try observer.stats()["commands"]! >= UInt64(g - 1) * 80_000 })
                #expect(client.exitStatus == nil, "the job ended before reload \(g - 1)")
                try replaceFile(job.map.path, mapText(generation: g))
                server.signal(SIGHUP)
                #expect(try eventually(within: 30) { try observer.stats()["map_generation"] == UInt64(g) })
                // Read after the switch: the new map.
                #expect(try observer.request("REQ \(g) 10.200.0.7:z") == "RES \(g) \(g * 1000 + 7)")
                let s = try observer.stats()
                #expect(s["commands"]! < 1_000_000 || client.exitStatus == nil, "reload \(g - 1) came after the job")
                lastConnections = s["connections_total"]!
            }
            let summary = try job.expectCompleted(client, within: 120)
            for key in ["reconnects", "retries", "resends", "connections_lost"] {
                #expect(jsonInteger(summary, key) == 0, "\(key) in \(summary)")
            }
            // Every connection the server ever accepted is the client's or the observer's: none was replaced.
            let end = try observer.stats()
            #expect(end["connections_total"] == lastConnections)
            #expect(end["reload_failures"] == 0)
            #expect(end["commands"]! >= 1_000_000)
            server.signal(SIGTERM)
            #expect(try server.waitForExit(seconds: 30) == 0)
            let log = server.stderr()
            #expect(log.components(separatedBy: "map reloaded").count - 1 == 10, "\(log.suffix(2000))")
            #expect(log.contains("entries=\(FaultJob.entries + 1100)"))
        }
    }

    @Test("SIGHUP with a bad map: the server logs FILE:LINE: message and keeps answering from the old map")
    func badSighup() async throws {
        try await blocking {
            let map = try TempFile("10.0.0.1:a:1:0\n")
            defer { map.remove() }
            let (server, port) = try ServerProcess.listening(map: map.path)
            let client = try LineClient(port: port)
            try replaceFile(map.path, "10.0.0.1:a:2:0\n10.0.0.1:a:3:0\n")
            server.signal(SIGHUP)
            #expect(try eventually(within: 20) { try client.stats()["reload_failures"] == 1 })
            #expect(try client.request("REQ 1 10.0.0.1:a") == "RES 1 1")
            #expect(try client.stats()["map_generation"] == 1)
            server.signal(SIGTERM)
            #expect(try server.waitForExit(seconds: 15) == 0)
            #expect(server.stderr().contains("\(map.path):2: duplicate entry for 10.0.0.1:a (first defined on line 1)"),
                    "\(server.stderr())")
        }
    }
}
