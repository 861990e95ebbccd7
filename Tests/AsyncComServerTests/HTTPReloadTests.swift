import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Testing

/// A reloadable server (see `reloadableServer`) with HTTP on 127.0.0.1 too; returns the HTTP port.
private func reloadableHTTPServer(
    _ mapText: String, configure: (inout ServerConfiguration) throws -> Void = { _ in }
) throws -> (Server, TempFile, UInt16, UInt16) {
    let (server, file, port) = try reloadableServer(mapText) { c in
        c.httpEndpoints = [.tcp(host: "127.0.0.1", port: 0)]
        try configure(&c)
    }
    guard case .tcp(_, let httpPort)? = server.httpEndpoints.first, httpPort != 0 else {
        server.beginShutdown()
        server.waitUntilStopped()
        throw TestFailure("no HTTP endpoint: \(server.httpEndpoints)")
    }
    return (server, file, port, httpPort)
}

/// The `reloaded` array of a `POST /v1/reload` body.
private func reloaded(_ r: HTTPResponse) -> [[String: Any]] { r.json?["reloaded"] as? [[String: Any]] ?? [] }

@Suite("HTTP: POST /v1/reload", .machineSlot(timeLimit: .minutes(2)))
struct HTTPReloadTests {
    @Test("a good reload: 200 with each input's outcome, the reply comes once this reactor answers from the new map")
    func goodReload() async throws {
        try await blocking {
            let (server, file, port, httpPort) = try reloadableHTTPServer("10.0.0.1:a:1:0\n")
            defer { file.remove(); server.beginShutdown(); server.waitUntilStopped() }
            let client = try HTTPTestClient(port: httpPort)
            #expect(try client.post(["10.0.0.1:a", "10.0.0.2:b"]).body == "{\"results\":[1,null],\"sum\":1,\"unknown\":1}\n")

            try replaceFile(file.path, "10.0.0.1:a:100:0\n10.0.0.2:b:200:0\n")
            let r = try client.request("POST", "/v1/reload")
            #expect(r.status == 200, "\(r.body)")
            #expect(r.headers["content-type"] == "application/json")
            let inputs = reloaded(r)
            #expect(inputs.count == 1)
            #expect(inputs.first?["input"] as? String == "map")
            #expect(inputs.first?["ok"] as? Bool == true)
            #expect((inputs.first?["message"] as? String)?.hasPrefix("map generation 2: 2 entries") == true, "\(r.body)")
            // Same connection, right after the reply: the new map.
            #expect(try client.post(["10.0.0.1:a", "10.0.0.2:b"]).body == "{\"results\":[100,200],\"sum\":300,\"unknown\":0}\n")
            let line = try LineClient(port: port)
            #expect(helloGeneration(try line.request("HELLO 1")) == 2)
            let s = try line.stats()
            #expect(s["map_generation"] == 2 && s["reload_failures"] == 0)

            // Only POST.
            let get = try client.request("GET", "/v1/reload")
            #expect(get.status == 405 && get.headers["allow"] == "POST")
            #expect(try line.stats()["map_generation"] == 2)
        }
    }

    @Test("a bad map: 422 with FILE:LINE: message, and the old map keeps answering")
    func badReload() async throws {
        try await blocking {
            let (server, file, port, httpPort) = try reloadableHTTPServer("10.0.0.1:a:1:0\n")
            defer { file.remove(); server.beginShutdown(); server.waitUntilStopped() }
            let client = try HTTPTestClient(port: httpPort)

            try replaceFile(file.path, "10.0.0.1:a:2:0\n10.0.0.1:c:oops:0\n")
            let r = try client.request("POST", "/v1/reload")
            #expect(r.status == 422, "\(r.body)")
            let inputs = reloaded(r)
            #expect(inputs.count == 1 && inputs.first?["input"] as? String == "map")
            #expect(inputs.first?["ok"] as? Bool == false)
            let message = inputs.first?["message"] as? String ?? ""
            #expect(message.hasPrefix("\(file.path):2: ") && message.contains("oops"), "\(r.body)")

            #expect(try client.post(["10.0.0.1:a", "10.0.0.1:c"]).body == "{\"results\":[1,null],\"sum\":1,\"unknown\":1}\n")
            let s = try LineClient(port: port).stats()
            #expect(s["map_generation"] == 1 && s["reload_failures"] == 1)
        }
    }

    @Test("with tokens: no Bearer is 401 and reloads nothing; with one, the map and the token file reload")
    func bearer() async throws {
        try await blocking {
            let tokenFile = try TempFile("alice:\(ServerAuthTests.alice)\n")
            defer { tokenFile.remove() }
            let (server, file, port, httpPort) = try reloadableHTTPServer("10.0.0.1:a:1:0\n") { c in
                c.authTokens = try AuthTokens(contentsOfFile: tokenFile.path)
                c.authTokenFile = tokenFile.path
            }
            defer { file.remove(); server.beginShutdown(); server.waitUntilStopped() }
            try replaceFile(file.path, "10.0.0.1:a:100:0\n")

            let anonymous = try HTTPTestClient(port: httpPort)
            let refused = try anonymous.request("POST", "/v1/reload")
            #expect(refused.status == 401 && refused.errorCode == "AUTH_REQUIRED")
            #expect(try anonymous.line.isClosedByPeer())
            let admin = try LineClient(port: port)
            #expect(try admin.request("HELLO 1 token=\(ServerAuthTests.alice)").hasPrefix("HELLO 1 server="))
            #expect(try admin.stats()["map_generation"] == 1)

            let client = try HTTPTestClient(port: httpPort)
            let r = try client.request("POST", "/v1/reload", headers: ["Authorization": "Bearer \(ServerAuthTests.alice)"])
            #expect(r.status == 200, "\(r.body)")
            #expect(reloaded(r).map { $0["input"] as? String } == ["map", "tokens"])
            #expect(reloaded(r).allSatisfy { $0["ok"] as? Bool == true })
            #expect(try admin.stats()["map_generation"] == 2)
        }
    }

    @Test("a client that hangs up while its reload runs: the reload completes, the server keeps serving")
    func hangUp() async throws {
        try await blocking {
            let (server, file, port, httpPort) = try reloadableHTTPServer("10.0.0.1:a:1:0\n")
            defer { file.remove(); server.beginShutdown(); server.waitUntilStopped() }
            try replaceFile(file.path, "10.0.0.1:a:100:0\n")
            do {
                let client = try HTTPTestClient(port: httpPort)
                try client.send("POST", "/v1/reload")
            }  // closed here, most likely before the reply
            let line = try LineClient(port: port)
            #expect(try eventually { try line.stats()["map_generation"] == 2 })
            #expect(try eventually { try line.stats()["connections"] == 1 })
            #expect(try HTTPTestClient(port: httpPort).post(["10.0.0.1:a"]).body == "{\"results\":[100],\"sum\":100,\"unknown\":0}\n")
        }
    }
}
