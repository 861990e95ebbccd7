#if canImport(Glibc)
import Glibc
#endif
import AsyncComCore
import AsyncComTLS
import Foundation

/// The `tls` scenario's support: a throwaway CA and a certificate for 127.0.0.1 made with the openssl command in
/// the scratch folder (never in the repository), and a handshake-rate probe.
enum TLSBench {
    struct Files {
        let ca: String
        let certificate: String
        let key: String
    }

    /// Makes (once per scratch folder) a CA and a server certificate for 127.0.0.1, EC P-256 (the common choice).
    static func files(scratch: String) throws -> Files {
        let dir = scratch + "/tls-certificates"
        let files = Files(ca: dir + "/ca.pem", certificate: dir + "/server.pem", key: dir + "/server.key")
        if FileManager.default.fileExists(atPath: files.key) { return files }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
            .write(toFile: dir + "/server.ext", atomically: false, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try openssl(["req", "-x509"] + ec + ["-keyout", dir + "/ca.key", "-out", files.ca, "-days", "2",
                                             "-subj", "/CN=asynccom-bench CA", "-addext", "basicConstraints=critical,CA:TRUE"])
        try openssl(["req"] + ec + ["-keyout", files.key, "-out", dir + "/server.csr", "-subj", "/CN=127.0.0.1"])
        try openssl(["x509", "-req", "-in", dir + "/server.csr", "-CA", files.ca, "-CAkey", dir + "/ca.key",
                     "-CAcreateserial", "-out", files.certificate, "-days", "2", "-extfile", dir + "/server.ext"])
        return files
    }

    private static func openssl(_ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw RunFailure(description: "openssl \(arguments.first ?? "") failed (status \(p.terminationStatus)); is the openssl command installed?")
        }
    }

    /// Full TLS handshakes (new session each time, as new clients) one after another for `seconds`: TCP connect,
    /// handshake with certificate verification, one PING round trip, close. Returns handshakes per second.
    static func handshakeRate(port: UInt16, caFile: String, seconds: Double) throws -> Double {
        let context = try TLSContext.client(caFile: caFile)
        let ping = ByteBuffer(capacity: 64)
        let reply = ByteBuffer(capacity: 256)
        let start = Runner.monotonicSeconds()
        var count = 0
        while Runner.monotonicSeconds() - start < seconds {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw RunFailure(description: "socket: errno \(errno)") }
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { throw RunFailure(description: "connect: errno \(errno)") }
            var on: Int32 = 1  // as every asynccom client: no Nagle delay between Finished and the PING
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            let session = try context.makeSession(fd: fd, serverName: "127.0.0.1")
            guard case .done = session.handshake() else { throw RunFailure(description: "TLS handshake failed") }
            ping.clear()
            ping.append("PING\n")
            while !ping.isEmpty { _ = try session.write(from: ping) }
            reply.clear()
            while !reply.readableView.contains(0x0A) {
                guard let n = try session.read(into: reply, atMost: 256), n > 0 else {
                    throw RunFailure(description: "no PONG over TLS")
                }
            }
            count += 1
        }
        return Double(count) / (Runner.monotonicSeconds() - start)
    }
}
