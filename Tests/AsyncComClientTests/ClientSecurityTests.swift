import AsyncComClient
import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Foundation
import Testing

/// The client against servers that check who connects: tokens (library, `--token-file`, `ASYNCCOM_TOKEN`) and
/// `tls://` servers (CA verification, host names).
@Suite(.machineSlot(timeLimit: .minutes(3))) struct ClientSecurityTests {
    static let token = "0123456789abcdef0123"
    let seedMap = dataPath("seed/map.txt")
    let seedCommands = dataPath("seed/commands.txt")

    /// A seed-map server with a TLS listener (certificate for localhost/127.0.0.1 from the test CA) and,
    /// optionally, the test token.
    func server(tokens: Bool, certificate: String = "server") throws -> (TestServer, Endpoint) {
        let certs = try TestCertificates.get()
        var set: AuthTokens?
        if tokens {
            var t = "client-tests:\(Self.token)\n"
            set = try t.withUTF8 { try AuthTokens(parsing: UnsafeRawBufferPointer($0), fileName: "tokens") }
        }
        let server = try TestServer(map: try DeviceMap(contentsOfFile: seedMap), extraEndpoints: [.tls(host: "127.0.0.1", port: 0)]) {
            $0.authTokens = set
            $0.tls = .init(certificateFile: certs.path(certificate + ".pem"), keyFile: certs.path(certificate + ".key"))
        }
        guard case .tls(_, let port) = server.endpoints[1] else { throw TestFailure("no tls endpoint") }
        return (server, .tls(host: "localhost", port: port))
    }

    func run(_ configuration: ClientConfiguration) async throws -> JobSummary {
        try await AsyncComClient.quiet(configuration).run(source: try FileCommandSource(path: seedCommands))
    }

    @Test func tokenAndTLSJob() async throws {
        let (server, tls) = try server(tokens: true)
        defer { server.stop() }
        var c = ClientConfiguration(servers: [tls], batch: 16, connectTimeout: 2)
        c.tlsCAFile = try TestCertificates.get().path("ca.pem")
        c.token = Self.token
        let summary = try await run(c)
        #expect(summary.sum == 512 && summary.ok == 512 && summary.failed == 0)
        let stats = server.server.stats().total
        #expect(stats[.tlsHandshakes] >= 1)
        #expect(stats[.authOK] >= 1)
    }

    @Test func plaintextTokenJob() async throws {
        let (server, _) = try server(tokens: true)
        defer { server.stop() }
        var c = ClientConfiguration(servers: [server.endpoint], batch: 16, connectTimeout: 2)
        c.token = Self.token
        #expect(try await run(c).ok == 512)
        // Without the token, or with a wrong one, every command fails (after the connect timeout), none is answered.
        for token in [nil, "wrong-token-0000000000"] {
            var bad = ClientConfiguration(servers: [server.endpoint], batch: 16, requestTimeout: 1, connectTimeout: 1)
            bad.token = token
            let summary = try await run(bad)
            #expect(summary.ok == 0 && summary.failed == 512, "\(token ?? "no token")")
        }
    }

    @Test(arguments: [("other-ca.pem", "server", "localhost"), ("ca.pem", "expired", "localhost"),
                      ("ca.pem", "self-signed", "localhost"), ("ca.pem", "server", "127.0.0.2")])
    func refusedCertificates(ca: String, certificate: String, host: String) async throws {
        let (server, tls) = try server(tokens: false, certificate: certificate)
        defer { server.stop() }
        guard case .tls(_, let port) = tls else { return }
        var c = ClientConfiguration(servers: [.tls(host: host, port: port)], batch: 16, requestTimeout: 1, connectTimeout: 1)
        c.tlsCAFile = try TestCertificates.get().path(ca)
        let summary = try await run(c)
        #expect(summary.ok == 0 && summary.failed == 512, "\(ca) \(certificate) \(host)")
        #expect(server.server.stats().total[.requests] == 0)
    }

    @Test func tlsToPlaintextAndPlaintextToTLSFailCleanly() async throws {
        let (server, tls) = try server(tokens: false)
        defer { server.stop() }
        guard case .tcp(_, let plainPort) = server.endpoint, case .tls(_, let tlsPort) = tls else { return }
        var toPlain = ClientConfiguration(servers: [.tls(host: "127.0.0.1", port: plainPort)], batch: 16,
                                          requestTimeout: 1, connectTimeout: 1)
        toPlain.tlsCAFile = try TestCertificates.get().path("ca.pem")
        #expect(try await run(toPlain).failed == 512)
        let toTLS = ClientConfiguration(servers: [.tcp(host: "127.0.0.1", port: tlsPort)], batch: 16,
                                        requestTimeout: 1, connectTimeout: 1)
        #expect(try await run(toTLS).failed == 512)
        // The server is still fine.
        var good = ClientConfiguration(servers: [tls], batch: 16, connectTimeout: 2)
        good.tlsCAFile = try TestCertificates.get().path("ca.pem")
        #expect(try await run(good).ok == 512)
    }

    @Test func commandLine() async throws {
        let (server, tls) = try server(tokens: true)
        defer { server.stop() }
        let certs = try TestCertificates.get()
        let tokenFile = try TempFile("# the test token\nclient-tests:\(Self.token)\n")
        defer { tokenFile.remove() }
        let client = try executablePath("asynccom-client")
        // --token-file and --tls-ca.
        let a = try runToolCapturing(client, ["--server", "\(tls)", "--tls-ca", certs.path("ca.pem"), "--token-file", tokenFile.path,
                                              "--json", "--quiet", seedCommands], stdin: "")
        #expect(a.status == 0, "\(a.stderr)")
        #expect(a.stdout.contains("\"sum\":512"), "\(a.stdout)")
        // ASYNCCOM_TOKEN from the environment, on plaintext.
        let b = try runToolCapturing("/usr/bin/env", ["ASYNCCOM_TOKEN=\(Self.token)", client, "--server", "\(server.endpoint)",
                                                      "--json", "--quiet", seedCommands], stdin: "")
        #expect(b.status == 0, "\(b.stderr)")
        #expect(b.stdout.contains("\"sum\":512"), "\(b.stdout)")
        // A bad token file is FILE:LINE, exit 2; a bad CA file is named.
        let bad = try TempFile("short\n")
        defer { bad.remove() }
        let c = try runToolCapturing(client, ["--token-file", bad.path, seedCommands], stdin: "")
        #expect(c.status == 2)
        #expect(c.stderr.hasPrefix("asynccom-client: error: \(bad.path):1: token shorter than 16 characters"), "\(c.stderr)")
        let d = try runToolCapturing(client, ["--server", "\(tls)", "--tls-ca", "/nonexistent.pem", seedCommands], stdin: "")
        #expect(d.status == 2)
        #expect(d.stderr.contains("cannot load the CA file /nonexistent.pem"), "\(d.stderr)")
    }
}
