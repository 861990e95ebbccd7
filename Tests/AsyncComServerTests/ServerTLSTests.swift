import AsyncComCore
import AsyncComServer
import AsyncComTLS
import AsyncComTestSupport
import Testing

/// `tls://` listeners: handshakes on the reactors' own non-blocking sockets, mutual TLS, tokens over TLS, and the
/// ways a wrong peer fails. Certificates are made at test time with the openssl command.
@Suite("Server: TLS", .machineSlot(timeLimit: .minutes(3)))
struct ServerTLSTests {
    static let token = "0123456789abcdef0123"

    /// A server with one plaintext TCP listener (port 0, `server.port`) and one TLS listener (returned).
    static func server(clientCA: Bool = false, tokens: Bool = false,
                       _ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> (TestServer, UInt16) {
        let certs = try TestCertificates.get()
        var tokenSet: AuthTokens?
        if tokens {
            var t = "test:\(token)\n"
            tokenSet = try t.withUTF8 { try AuthTokens(parsing: UnsafeRawBufferPointer($0), fileName: "tokens") }
        }
        let server = try TestServer(map: smallMap, reactors: 2, extraEndpoints: [.tls(host: "127.0.0.1", port: 0)]) {
            $0.tls = .init(certificateFile: certs.path("server.pem"), keyFile: certs.path("server.key"),
                           clientCAFile: clientCA ? certs.path("ca.pem") : nil)
            $0.authTokens = tokenSet
            configure(&$0)
        }
        guard case .tls(_, let port) = server.endpoints[1], port != 0 else {
            throw TestFailure("no tls endpoint: \(server.endpoints)")
        }
        return (server, port)
    }

    static func clientContext(ca: String = "ca.pem", certificate: String? = nil) throws -> TLSContext {
        let certs = try TestCertificates.get()
        let context = try TLSContext.client(caFile: certs.path(ca))
        if let certificate {
            try context.useClientCertificate(certificateFile: certs.path(certificate + ".pem"),
                                             keyFile: certs.path(certificate + ".key"))
        }
        return context
    }

    /// STATS over the plaintext listener (no tokens on these servers unless asked).
    static func stats(_ server: TestServer) throws -> [String: UInt64] {
        try server.client().stats()
    }

    @Test("requests over TLS are answered like plaintext ones; the handshake is counted")
    func requestsOverTLS() async throws {
        try await blocking {
            let (server, port) = try Self.server()
            let c = try TLSLineClient(port: port, context: try Self.clientContext())
            #expect(try c.request("REQ 1 10.0.0.1:fast 10.0.0.2:fast") == "RES 1 7 -1")
            #expect(try c.request("PING over-tls") == "PONG over-tls")
            try c.send("REQ 2 10.0.0.1:slow\nQUIT\n")
            #expect(try c.line() == "RES 2 30")
            #expect(try c.line() == "BYE")
            #expect(try c.readLine() == nil)
            let stats = try Self.stats(server)
            #expect(stats["tls_handshakes"] == 1)
            #expect(stats["unauthenticated"] == 0)
        }
    }

    @Test("a large pipelined job over TLS comes back complete (partial TLS writes and reads)")
    func bigJobOverTLS() async throws {
        try await blocking {
            let (server, port) = try Self.server()
            _ = server
            let c = try TLSLineClient(port: port, context: try Self.clientContext())
            var text = ""
            for id in 0..<3000 { text += "REQ \(id) " + String(repeating: "10.0.0.1:fast ", count: 20) + "\n" }
            try c.send(text)
            var seen = 0
            while seen < 3000 {
                let line = try c.line()
                #expect(line.hasPrefix("RES "), "\(line)")
                seen += 1
            }
        }
    }

    @Test("openssl s_client talks to a tls:// listener")
    func opensslClient() async throws {
        try await blocking {
            let (server, port) = try Self.server()
            _ = server
            let certs = try TestCertificates.get()
            let r = try runToolCapturing("/usr/bin/openssl", [
                "s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", certs.path("ca.pem"),
                "-verify_return_error", "-verify_hostname", "localhost", "-quiet",
            ], stdin: "PING s_client\nREQ 1 10.0.0.1:fast\nQUIT\n")
            #expect(r.stdout.contains("PONG s_client\nRES 1 7\nBYE\n"), "stdout: \(r.stdout) stderr: \(r.stderr)")
        }
    }

    @Test("tokens over TLS: the HELLO comes through the tunnel; without it AUTH_REQUIRED")
    func tokensOverTLS() async throws {
        try await blocking {
            let (server, port) = try Self.server(tokens: true)
            _ = server
            let good = try TLSLineClient(port: port, context: try Self.clientContext())
            try good.send("HELLO 1 token=\(Self.token)\nREQ 1 10.0.0.1:fast\n")
            #expect(try good.line().hasPrefix("HELLO 1 server="))
            #expect(try good.line() == "RES 1 7")
            let bad = try TLSLineClient(port: port, context: try Self.clientContext())
            #expect(try bad.request("STATS token=\(Self.token)")
                == "ERR - AUTH_REQUIRED authenticate first: HELLO 1 token=<token> must be the first line")
            #expect(try bad.readLine() == nil)
        }
    }

    @Test("plaintext to a TLS port is told TLS_REQUIRED and closed; TLS to a plaintext port fails the handshake")
    func wrongPorts() async throws {
        try await blocking {
            let (server, port) = try Self.server()
            let plain = try LineClient(port: port)
            #expect(try plain.request("PING") == "ERR - TLS_REQUIRED this port speaks TLS: connect with tls://")
            #expect(try plain.isClosedByPeer())
            #expect(try eventually { try Self.stats(server)["tls_failed"] == 1 })
            #expect(throws: TLSError.self) { _ = try TLSLineClient(port: server.port, context: try Self.clientContext()) }
            // Both listeners still serve.
            #expect(try server.client().request("PING still") == "PONG still")
            #expect(try TLSLineClient(port: port, context: try Self.clientContext()).request("PING tls") == "PONG tls")
        }
    }

    @Test("mutual TLS: a client certificate signed by the client CA is admitted; none, or a self-signed one, is refused")
    func mutualTLS() async throws {
        try await blocking {
            let (server, port) = try Self.server(clientCA: true)
            let admitted = try TLSLineClient(port: port, context: try Self.clientContext(certificate: "client"))
            #expect(try admitted.request("PING mtls") == "PONG mtls")
            for certificate in [nil, "self-signed"] {
                // TLS 1.3: the client may finish its side before the server has checked its certificate, so the
                // refusal shows either in the handshake or as the end of the stream.
                do {
                    let refused = try TLSLineClient(port: port, context: try Self.clientContext(certificate: certificate))
                    try refused.send("PING refused\n")
                    #expect(try refused.readLine() == nil, "\(certificate ?? "no certificate")")
                } catch is TLSError {
                } catch let e as TestFailure {
                    Issue.record("\(certificate ?? "no certificate"): \(e)")
                } catch {}
            }
            #expect(try eventually { try Self.stats(server)["tls_failed"] == 2 })
            #expect(try admitted.request("PING after") == "PONG after")
        }
    }

    @Test("stalled handshakes are bounded by the auth timeout and counted; they hold no max-connections place")
    func stalledHandshakes() async throws {
        try await blocking {
            let (server, port) = try Self.server { $0.authTimeout = 0.5; $0.maxConnections = 2 }
            var stalled: [LineClient] = []
            for _ in 0..<20 {
                let s = try LineClient(port: port)
                try s.send(bytes: [0x16, 0x03, 0x01])  // the start of a handshake record, then nothing
                stalled.append(s)
            }
            // Both real places are still free while they stall.
            let a = try TLSLineClient(port: port, context: try Self.clientContext())
            #expect(try a.request("PING a") == "PONG a")
            #expect(try server.client().request("PING b") == "PONG b")
            for s in stalled { #expect(try s.isClosedByPeer()) }
            #expect(try eventually { try Self.stats(server)["tls_timeouts"] == 20 })
        }
    }

    @Test("1,000 stalled handshakes do not stop a real client's job")
    func thousandStalledHandshakes() async throws {
        try await blocking {
            let (server, port) = try Self.server { $0.authTimeout = 60 }
            let context = try Self.clientContext()
            func job() throws -> Double {
                let start = monotonicSeconds()
                let c = try TLSLineClient(port: port, context: context)
                var text = ""
                for id in 0..<2000 { text += "REQ \(id) 10.0.0.1:fast 10.0.0.2:fast\n" }
                try c.send(text)
                for _ in 0..<2000 { _ = try c.line() }
                return monotonicSeconds() - start
            }
            let quiet = try job()
            var stalled: [LineClient] = []
            for _ in 0..<1000 {
                let s = try LineClient(port: port)
                try s.send(bytes: [0x16, 0x03, 0x01])
                stalled.append(s)
            }
            #expect(try eventually { try Self.stats(server)["unauthenticated"] == 1000 })
            let busy = try job()
            print("TLS job of 2,000 requests: \(quiet) s alone, \(busy) s with 1,000 stalled handshakes")
            #expect(try Self.stats(server)["tls_handshakes"] == 2)
            stalled.removeAll()
            #expect(try eventually { try Self.stats(server)["unauthenticated"] == 0 })
        }
    }

    @Test("the client side refuses a server certificate from another CA, an expired one, a self-signed one, and a wrong name",
          arguments: [("other-ca.pem", "server", "localhost"), ("ca.pem", "expired", "localhost"),
                      ("ca.pem", "self-signed", "localhost"), ("ca.pem", "server", "example.com"),
                      ("ca.pem", "server", "127.0.0.2")])
    func clientVerification(ca: String, certificate: String, name: String) async throws {
        try await blocking {
            let (server, port) = try Self.server { $0.tls?.certificateFile = (try? TestCertificates.get().path(certificate + ".pem")) ?? ""
                                                   $0.tls?.keyFile = (try? TestCertificates.get().path(certificate + ".key")) ?? "" }
            #expect(throws: TLSError.self) {
                _ = try TLSLineClient(port: port, context: try Self.clientContext(ca: ca), serverName: name)
            }
            // The right CA and name (and IP address) work against the good certificate.
            if certificate == "server" {
                #expect(try TLSLineClient(port: port, context: try Self.clientContext(), serverName: "127.0.0.1").request("PING") == "PONG")
            }
            #expect(try eventually { try Self.stats(server)["tls_failed"] == 1 })
        }
    }

    @Test("a bad certificate or key stops the server with a clear error; tls:// needs them")
    func badCertificates() async throws {
        try await blocking {
            let certs = try TestCertificates.get()
            let map = packageRoot() + "/data/seed/map.txt"
            let mismatch = try runExecutable("asynccom-server", [
                "--map", map, "--listen", "tls://127.0.0.1:0",
                "--tls-cert", certs.path("server.pem"), "--tls-key", certs.path("client.key"),
            ])
            #expect(mismatch.status == 2)
            #expect(mismatch.stderr.hasPrefix("asynccom-server: error: TLS: cannot load the private key \(certs.path("client.key")): key values mismatch"),
                    "\(mismatch.stderr)")
            let missing = try runExecutable("asynccom-server", [
                "--map", map, "--listen", "tls://127.0.0.1:0", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key",
            ])
            #expect(missing.status == 2)
            #expect(missing.stderr.hasPrefix("asynccom-server: error: TLS: cannot load the certificate /nonexistent.pem"), "\(missing.stderr)")
            let none = try runExecutable("asynccom-server", ["--map", map, "--listen", "tls://127.0.0.1:0"])
            #expect(none.status == 64)
            #expect(none.stderr.contains("a tls:// endpoint needs a certificate and a key"), "\(none.stderr)")
            // Mutual TLS satisfies protected mode on a non-loopback address (validated only: nothing is bound).
            let mapValue = try TestServer.map(smallMap)
            var c = ServerConfiguration(map: mapValue, endpoints: [.tls(host: "0.0.0.0", port: 0)], reactors: 1)
            c.tls = .init(certificateFile: "a", keyFile: "b")
            #expect(throws: ServerError.self) { try c.validate() }
            c.tls?.clientCAFile = "c"
            #expect(throws: Never.self) { try c.validate() }
        }
    }
}
