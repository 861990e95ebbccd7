import AsyncComCore
import AsyncComServer

#if canImport(Glibc)
import Glibc
#endif

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A plain blocking line client with generous timeouts (10 s), for talking to the server under test.
final class LineClient {
    let fd: Int32
    private var pending: [UInt8] = []
    private(set) var bytesSent = 0
    private(set) var bytesReceived = 0

    init(port: UInt16, receiveBuffer: Int32? = nil, sendBuffer: Int32? = nil, timeoutSeconds: Int = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        Self.setTimeouts(fd, seconds: timeoutSeconds)
        if let receiveBuffer { Self.setOption(fd, SO_RCVBUF, receiveBuffer) }
        if let sendBuffer { Self.setOption(fd, SO_SNDBUF, sendBuffer) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            let e = errno
            Glibc.close(fd)
            throw TestFailure("connect to 127.0.0.1:\(port): errno \(e)")
        }
    }

    init(unixPath: String, timeoutSeconds: Int = 10) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        Self.setTimeouts(fd, seconds: timeoutSeconds)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in unixPath.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc != 0 {
            let e = errno
            Glibc.close(fd)
            throw TestFailure("connect to \(unixPath): errno \(e)")
        }
    }

    deinit { Glibc.close(fd) }

    private static func setTimeouts(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    private static func setOption(_ fd: Int32, _ option: Int32, _ value: Int32) {
        var v = value
        setsockopt(fd, SOL_SOCKET, option, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Whether a TCP connection to 127.0.0.1:`port` is accepted by the kernel right now.
    static func canConnect(port: UInt16) -> Bool {
        (try? LineClient(port: port)) != nil
    }

    func send(_ text: String) throws {
        var t = text
        try t.withUTF8 { try send(UnsafeRawBufferPointer($0)) }
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw TestFailure("send: errno \(errno)")
            }
            offset += n
        }
        bytesSent += bytes.count
    }

    /// Sends what the socket takes without blocking; returns the byte count (0 when it would block).
    func sendSome(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let n = Glibc.send(fd, bytes.baseAddress!, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
            throw TestFailure("send: errno \(errno)")
        }
        bytesSent += n
        return n
    }

    /// The next line without its LF, or nil at EOF. Throws on timeout or error.
    func readLine() throws -> String? {
        try readRawLine().map { String(decoding: $0, as: UTF8.self) }
    }

    /// The next line's bytes without the LF, or nil at EOF. Throws on timeout or error.
    func readRawLine() throws -> [UInt8]? {
        while true {
            if let lf = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<lf])
                pending.removeFirst(lf + 1)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 {
                if !pending.isEmpty { throw TestFailure("EOF after a partial line: \(String(decoding: pending, as: UTF8.self))") }
                return nil
            }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw TestFailure("timed out waiting for a line") }
                throw TestFailure("recv: errno \(errno)")
            }
            bytesReceived += n
            pending.append(contentsOf: chunk[0..<n])
        }
    }

    /// Reads a line that must exist.
    func line() throws -> String {
        guard let l = try readLine() else { throw TestFailure("unexpected EOF") }
        return l
    }

    /// True when the server closed the connection (EOF or reset) with nothing more to read.
    func isClosedByPeer() throws -> Bool {
        do {
            return try readLine() == nil
        } catch let e as TestFailure where e.description.hasPrefix("recv: errno \(ECONNRESET)") {
            return true
        }
    }

    func request(_ text: String) throws -> String {
        try send(text + "\n")
        return try line()
    }

    /// One STATS exchange, as a dictionary.
    func stats() throws -> [String: UInt64] {
        let reply = try request("STATS")
        let tokens = reply.split(separator: " ")
        guard tokens.first == "STATS" else { throw TestFailure("not a STATS reply: \(reply)") }
        var out: [String: UInt64] = [:]
        for token in tokens.dropFirst() {
            let kv = token.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let v = UInt64(kv[1]) else { throw TestFailure("bad STATS field \(token)") }
            out[String(kv[0])] = v
        }
        return out
    }
}

/// An in-process server on 127.0.0.1, port 0, with a map built from text.
final class TestServer {
    let server: Server
    let port: UInt16
    let endpoints: [Endpoint]

    init(map text: String, reactors: Int = 2, extraEndpoints: [Endpoint] = [],
         configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        let map = try Self.map(text)
        var configuration = ServerConfiguration(
            map: map, endpoints: [.tcp(host: "127.0.0.1", port: 0)] + extraEndpoints, reactors: reactors)
        configure(&configuration)
        server = Server(configuration: configuration)
        endpoints = try server.start()
        guard case .tcp(_, let p) = endpoints[0], p != 0 else { throw TestFailure("no port: \(endpoints)") }
        port = p
    }

    static func map(_ text: String) throws -> DeviceMap {
        var t = text
        return try t.withUTF8 { try DeviceMap(parsing: UnsafeRawBufferPointer($0), fileName: "test-map") }
    }

    func client(receiveBuffer: Int32? = nil, sendBuffer: Int32? = nil) throws -> LineClient {
        try LineClient(port: port, receiveBuffer: receiveBuffer, sendBuffer: sendBuffer)
    }

    func stop() {
        server.beginShutdown()
        server.waitUntilStopped()
    }

    deinit { stop() }
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonicSeconds() + seconds
    while true {
        if try condition() { return true }
        if monotonicSeconds() > deadline { return false }
        usleep(20_000)
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The package root, from this file's path.
func packageRoot(_ file: String = #filePath) -> String {
    var parts = file.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/AsyncComServerTests/<file>
    return parts.joined(separator: "/")
}

/// A small map used by most tests: `fast` answers at once, `slow` after 0.3 s, `slower` after 0.5 s,
/// `long` after 5 s.
let smallMap = """
    # test map
    10.0.0.1:fast:7:0
    10.0.0.1:slow:30:0.3
    10.0.0.1:slower:50:0.5
    10.0.0.1:long:-5:5
    10.0.0.2:fast:-1:0
    ::1:fast:61:0
    10.0.0.3:second:3:1
    """
