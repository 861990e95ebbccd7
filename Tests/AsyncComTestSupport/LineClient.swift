
#if canImport(Glibc)
import Glibc
#endif

/// A plain blocking line client with generous timeouts (10 s), for talking to the server under test.
public final class LineClient {
    public let fd: Int32
    /// Bytes received and not returned yet: `pending[pendingStart...]`, with no LF before `scanFrom`.
    private var pending: [UInt8] = []
    private var pendingStart = 0
    private var scanFrom = 0
    public private(set) var bytesSent = 0
    public private(set) var bytesReceived = 0

    public init(port: UInt16, receiveBuffer: Int32? = nil, sendBuffer: Int32? = nil, timeoutSeconds: Int = 10) throws {
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
            // No close here: every stored property is set, so throwing runs deinit, which closes `fd`. Closing it
            // twice closed whatever another test thread had just opened under the same number.
            throw TestFailure("connect to 127.0.0.1:\(port): errno \(errno)")
        }
    }

    public init(unixPath: String, timeoutSeconds: Int = 10) throws {
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
            // No close here: every stored property is set, so throwing runs deinit, which closes `fd`. Closing it
            // twice closed whatever another test thread had just opened under the same number.
            throw TestFailure("connect to \(unixPath): errno \(errno)")
        }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

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
    public static func canConnect(port: UInt16) -> Bool {
        (try? LineClient(port: port)) != nil
    }

    public func send(_ text: String) throws {
        var t = text
        try t.withUTF8 { try send(UnsafeRawBufferPointer($0)) }
    }

    public func send(_ bytes: UnsafeRawBufferPointer) throws {
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
    public func sendSome(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let n = Glibc.send(fd, bytes.baseAddress!, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
            throw TestFailure("send: errno \(errno)")
        }
        bytesSent += n
        return n
    }

    /// The next line without its LF, or nil at EOF. Throws on timeout or error.
    public func readLine() throws -> String? {
        try readRawLine().map { String(decoding: $0, as: UTF8.self) }
    }

    /// The next line's bytes without the LF, or nil at EOF. Throws on timeout or error.
    public func readRawLine() throws -> [UInt8]? {
        while true {
            if let lf = pending[scanFrom...].firstIndex(of: 0x0A) {
                let line = Array(pending[pendingStart..<lf])
                pendingStart = lf + 1
                scanFrom = pendingStart
                // Returned bytes are dropped in bulk: removing each line from the front moved the whole buffer
                // per line (quadratic: seconds for 100,000 short replies in a debug build).
                if pendingStart >= 65536 && 2 * pendingStart >= pending.count {
                    pending.removeFirst(pendingStart)
                    pendingStart = 0
                    scanFrom = 0
                }
                return line
            }
            scanFrom = pending.count
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 {
                if pendingStart < pending.count {
                    throw TestFailure("EOF after a partial line: \(String(decoding: pending[pendingStart...], as: UTF8.self))")
                }
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
    public func line() throws -> String {
        guard let l = try readLine() else { throw TestFailure("unexpected EOF") }
        return l
    }

    /// True when the server closed the connection (EOF or reset) with nothing more to read.
    public func isClosedByPeer() throws -> Bool {
        do {
            return try readLine() == nil
        } catch let e as TestFailure where e.description.hasPrefix("recv: errno \(ECONNRESET)") {
            return true
        }
    }

    public func request(_ text: String) throws -> String {
        try send(text + "\n")
        return try line()
    }

    /// One STATS exchange, as a dictionary.
    public func stats() throws -> [String: UInt64] {
        try Self.parseStats(try request("STATS"))
    }

    /// A `STATS ...` line as a dictionary.
    public static func parseStats(_ reply: String) throws -> [String: UInt64] {
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

extension LineClient {
    public func send(bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try send($0) }
    }

    /// Makes the close in `deinit` an abortive one (SO_LINGER 0): the kernel sends RST and drops unsent data.
    public func resetOnClose() {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
    }

    /// Reads lines until one equals `last`; returns the lines before it.
    public func lines(until last: String) throws -> [String] {
        var out: [String] = []
        while true {
            let l = try line()
            if l == last { return out }
            out.append(l)
        }
    }

    /// Whether this connection still answers a PING in order, after whatever came before.
    public func stillAnswers(_ token: String = "alive") throws -> Bool {
        try send("PING \(token)\n")
        return try lines(until: "PONG \(token)").allSatisfy { !$0.hasPrefix("PONG \(token)") }
    }
}
