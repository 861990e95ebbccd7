import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Testing

/// Token authentication (`--auth-token-file`), the limits on connections that have not authenticated, and
/// protected mode.
@Suite("Server: authentication", .machineSlot(timeLimit: .minutes(2)))
struct ServerAuthTests {
    static let alice = "0123456789abcdef0123"
    static let bob = "fedcba9876543210fedcba98"
    static let required = "ERR - AUTH_REQUIRED authenticate first: HELLO 1 token=<token> must be the first line"
    static let failed = "ERR - AUTH_FAILED wrong token"

    static func tokens() throws -> AuthTokens {
        var t = "alice:\(alice)\n\(bob)\n"
        return try t.withUTF8 { try AuthTokens(parsing: UnsafeRawBufferPointer($0), fileName: "tokens") }
    }

    static func server(reactors: Int = 2, _ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> TestServer {
        let tokens = try tokens()
        return try TestServer(map: smallMap, reactors: reactors) {
            $0.authTokens = tokens
            $0.authFailureDelay = 0.2
            configure(&$0)
        }
    }

    /// A client that has authenticated, for reading STATS.
    static func admin(_ server: TestServer) throws -> LineClient {
        let c = try server.client()
        let hello = try c.request("HELLO 1 token=\(alice)")
        guard hello.hasPrefix("HELLO 1 server=") else { throw TestFailure("admin not admitted: \(hello)") }
        return c
    }

    @Test("the right token works; requests pipelined behind the HELLO are answered")
    func rightToken() async throws {
        try await blocking {
            let server = try Self.server()
            let c = try server.client()
            try c.send("HELLO 1 token=\(Self.bob)\nREQ 1 10.0.0.1:fast\nPING x\n")
            #expect(try c.line().hasPrefix("HELLO 1 server=asynccom/"))
            #expect(try c.line() == "RES 1 7")
            #expect(try c.line() == "PONG x")
            #expect(try c.request("REQ 2 10.0.0.1:fast 10.0.0.2:fast") == "RES 2 7 -1")
            // Another HELLO later is an ordinary HELLO.
            #expect(try c.request("HELLO 1 token=whatever").hasPrefix("HELLO 1 server="))
            let stats = try c.stats()
            #expect(stats["auth_ok"] == 1)
            #expect(stats["unauthenticated"] == 0)
            #expect(stats["connections"] == 1)
        }
    }

    @Test("missing tokens are refused at once with AUTH_REQUIRED and counted; a token inside PING, REQ or STATS does not count",
          arguments: ["PING token=\(alice)", "REQ 1 10.0.0.1:fast token=\(alice)", "STATS token=\(alice)",
                      "HELLO 1", "HELLO 1 \(alice)", "QUIT", "", "token=\(alice)"])
    func missingToken(line: String) async throws {
        try await blocking {
            let server = try Self.server()
            let c = try server.client()
            try c.send(line + "\nREQ 9 10.0.0.1:fast\n")
            #expect(try c.line() == Self.required)
            #expect(try c.isClosedByPeer())
            let stats = try Self.admin(server).stats()
            #expect(stats["auth_required"] == 1)
            #expect(stats["requests"] == 0, "a request behind the refused line was answered")
            #expect(stats["auth_ok"] == 1)  // the admin
        }
    }

    /// A first line sent by a client that does not know a token (named for the test log).
    struct Attempt: CustomTestStringConvertible, Sendable {
        let name: String
        let bytes: [UInt8]
        var testDescription: String { name }
    }

    static let wrongAttempts: [Attempt] = [
        Attempt(name: "one character too many", bytes: Array("HELLO 1 token=\(alice)x\n".utf8)),
        Attempt(name: "one character short", bytes: Array("HELLO 1 token=\(bob.dropLast())\n".utf8)),
        Attempt(name: "binary", bytes: Array("HELLO 1 token=".utf8) + [0x00, 0x01, 0xFF, 0xFE] + Array(alice.utf8) + [0x0A]),
        Attempt(name: "empty", bytes: Array("HELLO 1 token=\n".utf8)),
        Attempt(name: "300 characters", bytes: Array("HELLO 1 token=\(String(repeating: "a", count: 300))\n".utf8)),
        // A first line over 1 KiB: nothing more is buffered, it fails like a wrong token.
        Attempt(name: "line over 1 KiB", bytes: Array("HELLO 1 token=\(String(repeating: alice, count: 60))\n".utf8)),
        Attempt(name: "4000 bytes without LF", bytes: Array(repeating: UInt8(ascii: "x"), count: 4000)),
    ]

    @Test("wrong, binary, empty and too-long tokens get AUTH_FAILED only after the delay, and are counted",
          arguments: wrongAttempts)
    func wrongToken(attempt: Attempt) async throws {
        try await blocking {
            let server = try Self.server { $0.authFailureDelay = 0.3 }
            let c = try server.client()
            let start = monotonicSeconds()
            try c.send(bytes: attempt.bytes)
            try c.send("REQ 9 10.0.0.1:fast\n")
            #expect(try c.line() == Self.failed)
            #expect(monotonicSeconds() - start >= 0.29, "the failure was answered before the delay")
            #expect(try c.isClosedByPeer())
            let stats = try Self.admin(server).stats()
            #expect(stats["auth_failed"] == 1)
            #expect(stats["requests"] == 0)
        }
    }

    @Test("HELLO with another version is told the version and closed")
    func otherVersion() async throws {
        try await blocking {
            let server = try Self.server()
            let c = try server.client()
            #expect(try c.request("HELLO 2 token=\(Self.alice)") == "ERR - UNSUPPORTED_VERSION this server speaks version 1")
            #expect(try c.isClosedByPeer())
        }
    }

    @Test("a connection that does not authenticate in time gets AUTH_TIMEOUT, also after half a line")
    func authTimeout() async throws {
        try await blocking {
            let server = try Self.server { $0.authTimeout = 0.3 }
            let silent = try server.client()
            let partial = try server.client()
            try partial.send("HELLO 1 tok")
            #expect(try silent.line() == "ERR - AUTH_TIMEOUT not authenticated within 0.3 seconds")
            #expect(try silent.isClosedByPeer())
            #expect(try partial.line() == "ERR - AUTH_TIMEOUT not authenticated within 0.3 seconds")
            #expect(try partial.isClosedByPeer())
            let stats = try Self.admin(server).stats()
            #expect(stats["auth_timeouts"] == 2)
        }
    }

    @Test("unauthenticated connections have their own cap and never take max-connections slots")
    func unauthenticatedCap() async throws {
        try await blocking {
            let server = try Self.server {
                $0.maxConnections = 2
                $0.maxUnauthenticated = 3
            }
            let admin = try Self.admin(server)
            // Three idle unauthenticated connections fill their cap; once they are all accepted, a fourth is refused
            var idle: [LineClient] = []
            for _ in 0..<3 { idle.append(try server.client()) }
            #expect(try eventually { try admin.stats()["unauthenticated"] == 3 })
            let refused = try server.client()
            #expect(try refused.line() == "ERR - BUSY too many connections waiting to authenticate (max 3)")
            #expect(try refused.isClosedByPeer())
            // ... while real clients still get both max-connections slots.
            idle.removeLast()  // frees one unauthenticated place for the next login
            #expect(try eventually { try admin.stats()["unauthenticated"] == 2 })
            let second = try Self.admin(server)
            #expect(try second.request("REQ 1 10.0.0.1:fast") == "RES 1 7")
            // A third authenticated client finds max-connections full.
            idle.removeLast()
            #expect(try eventually { try admin.stats()["unauthenticated"] == 1 })
            let third = try server.client()
            #expect(try third.request("HELLO 1 token=\(Self.alice)") == "ERR - BUSY too many connections (max 2)")
            #expect(try third.isClosedByPeer())
            let stats = try admin.stats()
            #expect(stats["auth_rejected"] == 1)
            #expect(stats["rejected"] == 1)
            #expect(try eventually { try admin.stats()["connections"] == 3 })  // 2 clients + 1 idle
        }
    }

    @Test("replaceTokens: new connections use the new tokens, admitted ones stay")
    func replaceTokens() async throws {
        try await blocking {
            let server = try Self.server()
            let old = try Self.admin(server)
            var t = "carol:cccccccccccccccccccc\n"
            let fresh = try t.withUTF8 { try AuthTokens(parsing: UnsafeRawBufferPointer($0), fileName: "new") }
            server.server.replaceTokens(fresh)
            let c = try server.client()
            #expect(try c.request("HELLO 1 token=\(Self.alice)") == Self.failed)
            let d = try server.client()
            #expect(try d.request("HELLO 1 token=cccccccccccccccccccc").hasPrefix("HELLO 1 server="))
            #expect(try old.stillAnswers())
        }
    }

    @Test("reload() (SIGHUP) reads the token file again: new connections use the new tokens; a bad file keeps the old ones")
    func reloadTokenFile() async throws {
        try await blocking {
            let mapFile = try TempFile("10.0.0.1:fast:7:0\n")
            let tokenFile = try TempFile("alice:\(Self.alice)\n")
            defer { mapFile.remove(); tokenFile.remove() }
            var configuration = ServerConfiguration(
                map: try DeviceMap(contentsOfFile: mapFile.path), mapFile: mapFile.path,
                endpoints: [.tcp(host: "127.0.0.1", port: 0)], reactors: 2,
                authTokens: try AuthTokens(contentsOfFile: tokenFile.path), authFailureDelay: 0.05)
            configuration.authTokenFile = tokenFile.path
            let server = Server(configuration: configuration)
            let endpoints = try server.start()
            defer { server.beginShutdown(); server.waitUntilStopped() }
            guard case .tcp(_, let port) = endpoints[0] else { throw TestFailure("no port") }
            let old = try LineClient(port: port)
            #expect(try old.request("HELLO 1 token=\(Self.alice)").hasPrefix("HELLO 1 server="))

            try writeFile(tokenFile.path, "bob:\(Self.bob)\n")
            let outcomes = server.reload()
            #expect(outcomes.map(\.input) == ["map", "tokens"])
            guard case .success = outcomes[1].result else { throw TestFailure("token reload failed: \(outcomes)") }
            #expect(try LineClient(port: port).request("HELLO 1 token=\(Self.alice)") == Self.failed)
            #expect(try LineClient(port: port).request("HELLO 1 token=\(Self.bob)").hasPrefix("HELLO 1 server="))
            #expect(try old.stillAnswers())

            // A bad token file: FILE:LINE, counted, and the tokens in force stay.
            try writeFile(tokenFile.path, "bob:\(Self.bob)\nshort\n")
            let bad = server.reload()
            guard case .failure(let error) = bad[1].result else { throw TestFailure("a bad token file was accepted") }
            #expect("\(error)".contains("\(tokenFile.path):2: "))
            #expect(try LineClient(port: port).request("HELLO 1 token=\(Self.bob)").hasPrefix("HELLO 1 server="))
            #expect(try old.stats()["reload_failures"] == 1)
        }
    }

    @Test("protected mode: a non-loopback endpoint needs tokens or --insecure")
    func protectedMode() throws {
        let map = try TestServer.map(smallMap)
        for host in ["0.0.0.0", "::", "10.1.2.3", "example.com", "::ffff:10.0.0.1"] {
            let c = ServerConfiguration(map: map, endpoints: [.tcp(host: host, port: 5557)], reactors: 1)
            #expect(throws: ServerError.self, "\(host)") { try c.validate() }
            var insecure = c
            insecure.insecure = true
            #expect(throws: Never.self) { try insecure.validate() }
            var tokens = c
            tokens.authTokens = try Self.tokens()
            #expect(throws: Never.self) { try tokens.validate() }
        }
        for host in ["127.0.0.1", "127.9.8.7", "::1", "0:0::1", "localhost", "::ffff:127.0.0.1"] {
            let c = ServerConfiguration(map: map, endpoints: [.tcp(host: host, port: 5557)], reactors: 1)
            #expect(throws: Never.self, "\(host)") { try c.validate() }
        }
        let unix = ServerConfiguration(map: map, endpoints: [.unix(path: "/tmp/x.sock")], reactors: 1)
        #expect(throws: Never.self) { try unix.validate() }
    }

    @Test("the executable: protected mode refuses to start, a bad token file is FILE:LINE and exit 2")
    func executable() async throws {
        try await blocking {
            let map = packageRoot() + "/data/seed/map.txt"
            let open = try runExecutable("asynccom-server", ["--map", map, "--listen", "tcp://0.0.0.0:0"])
            #expect(open.status == 64)
            #expect(open.stderr.hasPrefix("asynccom-server: error: refusing to listen on tcp://0.0.0.0:0 without authentication (protected mode)"))
            #expect(open.stdout.isEmpty)
            let bad = try TempFile("ok:\(Self.alice)\n\nweak\n")
            defer { bad.remove() }
            let r = try runExecutable("asynccom-server", ["--map", map, "--auth-token-file", bad.path, "--listen", "tcp://127.0.0.1:0"])
            #expect(r.status == 2)
            #expect(r.stderr == "asynccom-server: error: \(bad.path):3: token shorter than 16 characters (4); make one with: openssl rand -hex 32\n")
            #expect(r.stdout.isEmpty)
        }
    }
}
