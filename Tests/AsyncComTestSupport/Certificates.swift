#if canImport(Glibc)
import Glibc
#endif

/// Certificates for the TLS tests, made once per test process with the `openssl` command in a fresh temporary
/// directory (private keys are never part of the repository). EC P-256 keys: quick to make.
///
/// - `ca.pem`/`ca.key`: the test CA; `other-ca.pem`: a CA that signed nothing here.
/// - `server.pem`/`server.key`: for `localhost` and 127.0.0.1, signed by the CA.
/// - `expired.pem`/`expired.key`: the same names, signed by the CA, valid only in 2020.
/// - `self-signed.pem`/`self-signed.key`: the same names, signed by itself.
/// - `client.pem`/`client.key`: a client certificate signed by the CA (mutual TLS).
public struct TestCertificates: Sendable {
    public let directory: String

    public func path(_ name: String) -> String { directory + "/" + name }

    public static let shared: Result<TestCertificates, TestFailure> = {
        do {
            return .success(try make())
        } catch let e as TestFailure {
            return .failure(e)
        } catch {
            return .failure(TestFailure("\(error)"))
        }
    }()

    /// The shared set; throws what went wrong making it.
    public static func get() throws -> TestCertificates { try shared.get() }

    static func make() throws -> TestCertificates {
        let dir = try tempDirectory()
        func openssl(_ args: [String]) throws {
            let status = try runTool("/usr/bin/openssl", args)
            if status != 0 { throw TestFailure("openssl \(args.joined(separator: " ")) exited \(status)") }
        }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try writeFile(dir + "/server.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        try writeFile(dir + "/client.ext", "extendedKeyUsage=clientAuth\n")
        let d = dir + "/"
        for ca in ["ca", "other-ca"] {
            try openssl(["req", "-x509"] + ec + ["-keyout", d + "\(ca).key", "-out", d + "\(ca).pem", "-days", "2",
                         "-subj", "/CN=asynccom test \(ca)", "-addext", "basicConstraints=critical,CA:TRUE",
                         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        }
        for (name, ext) in [("server", "server.ext"), ("client", "client.ext"), ("expired", "server.ext")] {
            let cn = name == "client" ? "asynccom test client" : "localhost"
            try openssl(["req"] + ec + ["-keyout", d + "\(name).key", "-out", d + "\(name).csr", "-subj", "/CN=\(cn)"])
            if name == "expired" { continue }
            try openssl(["x509", "-req", "-in", d + "\(name).csr", "-CA", d + "ca.pem", "-CAkey", d + "ca.key",
                         "-CAcreateserial", "-out", d + "\(name).pem", "-days", "2", "-extfile", d + ext])
        }
        // A certificate whose validity ended in 2020: `openssl ca` takes explicit dates.
        try writeFile(dir + "/index.txt", "")
        try writeFile(dir + "/serial", "1000\n")
        try writeFile(dir + "/ca.cnf", """
            [ca]
            default_ca = test
            [test]
            dir = \(dir)
            database = \(dir)/index.txt
            new_certs_dir = \(dir)
            serial = \(dir)/serial
            certificate = \(dir)/ca.pem
            private_key = \(dir)/ca.key
            default_md = sha256
            policy = anything
            [anything]
            commonName = supplied

            """)
        try openssl(["ca", "-config", d + "ca.cnf", "-batch", "-notext", "-in", d + "expired.csr", "-out", d + "expired.pem",
                     "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-extfile", d + "server.ext"])
        try openssl(["req", "-x509"] + ec + ["-keyout", d + "self-signed.key", "-out", d + "self-signed.pem", "-days", "2",
                     "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        return TestCertificates(directory: dir)
    }
}

/// Runs a system tool (not one of this package's executables) with stdout and stderr discarded; returns its exit
/// status.
public func runTool(_ path: String, _ arguments: [String]) throws -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let pid = try spawnChild(path, arguments, actions: &actions)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
}

/// Runs a system tool with `stdin` text; returns its exit status, stdout and stderr.
public func runToolCapturing(_ path: String, _ arguments: [String], stdin: String) throws -> (status: Int32, stdout: String, stderr: String) {
    let input = try TempFile(stdin)
    let out = try TempFile("")
    let err = try TempFile("")
    defer { input.remove(); out.remove(); err.remove() }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, input.path, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, out.path, O_WRONLY | O_TRUNC, 0)
    posix_spawn_file_actions_addopen(&actions, 2, err.path, O_WRONLY | O_TRUNC, 0)
    let pid = try spawnChild(path, arguments, actions: &actions)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return ((status >> 8) & 0xFF, try readText(out.path), try readText(err.path))
}
