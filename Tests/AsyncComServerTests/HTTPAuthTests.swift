import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Testing

/// `Authorization: Bearer` on the HTTP API of a server with a token file (every route but /healthz).
@Suite("HTTP: Bearer tokens", .machineSlot(timeLimit: .minutes(1)))
struct HTTPAuthTests {
    @Test("the right Bearer token works; none, another scheme or a wrong one get 401 and a closed connection; /healthz stays open")
    func bearer() async throws {
        try await blocking {
            let tokens = try ServerAuthTests.tokens()
            let (server, port) = try httpServer { $0.authTokens = tokens }
            defer { server.stop() }
            let good = try HTTPTestClient(port: port)
            let ok = try good.request("GET", "/readyz", headers: ["Authorization": "Bearer \(ServerAuthTests.alice)"])
            #expect(ok.status == 200)
            let posted = try good.request("POST", "/v1/commands", body: "10.0.0.1:fast\n",
                                          headers: ["Authorization": "bearer  \(ServerAuthTests.bob) ", "Content-Type": "text/plain"])
            #expect(posted.status == 200 && posted.body == "{\"results\":[7],\"sum\":7,\"unknown\":0}\n")
            #expect(try HTTPTestClient(port: port).request("GET", "/healthz").status == 200)
            let refusals: [([String: String], String)] = [
                ([:], "AUTH_REQUIRED"),
                (["Authorization": "Basic YWxpY2U6eA=="], "AUTH_REQUIRED"),
                (["Authorization": "Bearer \(ServerAuthTests.alice)x"], "AUTH_FAILED"),
                (["Authorization": "Bearer"], "AUTH_FAILED"),
                (["Authorization": "Bearer \(ServerAuthTests.alice) extra"], "AUTH_FAILED"),
            ]
            for (headers, code) in refusals {
                let c = try HTTPTestClient(port: port)
                let r = try c.request("GET", "/metrics", headers: headers)
                #expect(r.status == 401, "\(headers)")
                #expect(r.errorCode == code, "\(headers): \(r.body)")
                #expect(r.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
                #expect(try c.line.isClosedByPeer())
            }
            let stats = try ServerAuthTests.admin(server).stats()
            #expect(stats["auth_required"] == 2)
            #expect(stats["auth_failed"] == 3)
        }
    }

    @Test("protected mode covers the HTTP listener: non-loopback needs tokens or --insecure")
    func protectedHTTP() throws {
        var c = ServerConfiguration(map: try TestServer.map(smallMap), reactors: 1)
        c.httpEndpoints = [.tcp(host: "0.0.0.0", port: 0)]
        #expect(throws: ServerError.self) { try c.validate() }
        c.authTokens = try ServerAuthTests.tokens()
        #expect(throws: Never.self) { try c.validate() }
        c.authTokens = nil
        c.insecure = true
        #expect(throws: Never.self) { try c.validate() }
    }
}
