import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A scripted stand-in for a server: plain blocking POSIX sockets on 127.0.0.1, one thread per connection,
/// each received line handed to `onLine`. Used to produce the faults a real server does not (silence, garbage,
/// dropped connections, duplicate replies) and to observe what the client sends.
public final class FakeServer: @unchecked Sendable {
    public final class Connection: @unchecked Sendable {
        public let fd: Int32
        public let number: Int
        private let lock = NSLock()
        private var closed = false

        init(fd: Int32, number: Int) {
            self.fd = fd
            self.number = number
        }

        public func send(_ text: String) {
            lock.lock()
            defer { lock.unlock() }
            guard !closed else { return }
            var bytes = Array(text.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeMutableBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                offset += n
            }
        }

        public func send(_ text: String, after seconds: Double) {
            _ = OwnThread {
                usleep(UInt32(seconds * 1e6))
                self.send(text)
            }
        }

        public func close() {
            lock.lock()
            defer { lock.unlock() }
            guard !closed else { return }
            closed = true
            shutdown(fd, Int32(SHUT_RDWR))
        }

        public var isClosed: Bool {
            lock.lock()
            defer { lock.unlock() }
            return closed
        }
    }

    public let port: UInt16
    private let listener: Int32
    private let onLine: @Sendable (Connection, String) -> Void
    private let lock = NSLock()
    private var connections: [Connection] = []
    private var stopped = false
    private var _lines: [String] = []

    /// Listens on `port` (0: any free port). `receiveBuffer`: SO_RCVBUF of the listener, which accepted
    /// connections inherit (nil: the kernel's default): a small one makes a server that stops reading fill up
    /// after as many bytes on any host.
    public init(port: UInt16 = 0, receiveBuffer: Int32? = nil, onLine: @escaping @Sendable (Connection, String) -> Void) throws {
        self.onLine = onLine
        // SO_REUSEPORT: to bind a port `unusedPort()` still holds.
        let bound: (fd: Int32, port: UInt16)
        do {
            bound = try bindLoopback(port: port, options: [SO_REUSEADDR, SO_REUSEPORT])
        } catch {
            throw NSError(domain: "FakeServer", code: Int(error.code),
                          userInfo: [NSLocalizedDescriptionKey: "bind: \(String(cString: strerror(error.code)))"])
        }
        let fd = bound.fd
        if var size = receiveBuffer {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        guard listen(fd, 128) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw NSError(domain: "FakeServer", code: Int(e), userInfo: [NSLocalizedDescriptionKey: "listen: \(String(cString: strerror(e)))"])
        }
        self.port = bound.port
        self.listener = fd
        releaseHeldPort(self.port)
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// Every line received so far, all connections.
    public var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return _lines
    }

    public var connectionCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return connections.count
    }

    private func acceptLoop() {
        // The listener is closed here, by the only thread that accepts on it, once `stop()`'s shutdown has woken
        // it: closed in `stop()` instead, a late accept() could land on the same number reused by another test's
        // listener and take its connections.
        defer { Glibc.close(listener) }
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return
            }
            lock.lock()
            if stopped {
                lock.unlock()
                Glibc.close(fd)
                return
            }
            let c = Connection(fd: fd, number: connections.count)
            connections.append(c)
            lock.unlock()
            let thread = Thread { [self] in readLoop(c) }
            thread.start()
        }
    }

    private func readLoop(_ c: Connection) {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            pending.append(contentsOf: chunk[0..<n])
            while let lf = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<lf], as: UTF8.self)
                pending.removeSubrange(...lf)
                lock.lock()
                _lines.append(line)
                lock.unlock()
                onLine(c, line)
                if c.isClosed { break }
            }
            if c.isClosed { break }
        }
        c.close()
        // The fd is closed only here, by the one thread that reads it, so its number is never reused under us.
        Glibc.close(c.fd)
    }

    /// Stops listening and drops every connection.
    public func stop() {
        lock.lock()
        stopped = true
        let all = connections
        lock.unlock()
        shutdown(listener, Int32(SHUT_RDWR))  // wakes the accept loop, which closes it
        for c in all { c.close() }
    }

    // MARK: canned behaviour

    public static let hello = "HELLO 1 server=fake/0 max_items=1000 max_line=65536 max_inflight=100000 reactors=1 reactor=0\n"

    /// `REQ <id> <items>` -> (id, items); nil for other lines.
    public static func parseRequest(_ line: String) -> (id: String, items: [String])? {
        let tokens = line.split(separator: " ").map(String.init)
        guard tokens.count >= 3, tokens[0] == "REQ" else { return nil }
        return (tokens[1], Array(tokens[2...]))
    }

    /// The canned map: `<a.b.c.d>:foo` -> d, `...:bar` -> d * 1000, anything else unknown.
    public static func value(of item: String) -> String {
        guard let colon = item.lastIndex(of: ":") else { return "?" }
        let device = item[..<colon]
        let command = item[item.index(after: colon)...]
        guard let dot = device.lastIndex(of: "."), let d = Int(device[device.index(after: dot)...]) else { return "?" }
        switch command {
        case "foo": return "\(d)"
        case "bar": return "\(d * 1000)"
        default: return "?"
        }
    }

    public static func reply(to request: (id: String, items: [String])) -> String {
        "RES \(request.id) " + request.items.map(value(of:)).joined(separator: " ") + "\n"
    }

    /// A well-behaved server answering with the canned map after `delay(id)` seconds.
    public static func answering(hello: String = FakeServer.hello, delay: @escaping @Sendable (UInt64) -> Double = { _ in 0 })
        -> @Sendable (Connection, String) -> Void {
        return { c, line in
            if line.hasPrefix("HELLO") {
                c.send(hello)
            } else if let r = parseRequest(line) {
                let d = delay(UInt64(r.id) ?? 0)
                if d > 0 { c.send(reply(to: r), after: d) } else { c.send(reply(to: r)) }
            }
        }
    }
}

/// Commands on devices 10.<i/62500>.<i/250 % 250>.<i%250 + 1> (n <= 16,000,000), alternately foo and bar, with the sum the canned map gives.
public func cannedCommands(_ n: Int, unknownEvery: Int = 0) -> (lines: [String], sum: Int128, unknown: Int) {
    var lines: [String] = []
    var sum: Int128 = 0
    var unknown = 0
    for i in 0..<n {
        let d = i % 250 + 1
        let device = "10.\(i / 62_500).\((i / 250) % 250).\(d)"
        if unknownEvery > 0 && i % unknownEvery == unknownEvery - 1 {
            lines.append("\(device):nope")
            unknown += 1
        } else if i % 2 == 0 {
            lines.append("\(device):foo")
            sum += Int128(d)
        } else {
            lines.append("\(device):bar")
            sum += Int128(d * 1000)
        }
    }
    return (lines, sum, unknown)
}

/// Sockets that hold ports handed out by `unusedPort()` (until a test server has bound the port) and by
/// `refusedPort()` (for the rest of the run), by port.
private let heldPorts = Mutex<[UInt16: Int32]>([:])

/// Binds 127.0.0.1:0 with SO_REUSEPORT only, without listening, close-on-exec; returns the socket and its port.
/// Such a socket refuses connections (nothing listens), and no other socket can get its port: not a bind to port 0
/// (the kernel picks ports without a conflict, and SO_REUSEPORT sharing is not offered there), not a connect's
/// source port, not a listener without SO_REUSEPORT. Only a listener that asks for this port with SO_REUSEPORT can
/// join it: the test server meant to take it. (A port bound, read back and closed was taken in parallel runs by
/// other tests' servers, twice: the "dead" server answered, and a server started later got EADDRINUSE.)
private func holdPort() -> UInt16 {
    let held: (fd: Int32, port: UInt16)
    do {
        held = try bindLoopback(options: [SO_REUSEPORT])
    } catch {
        preconditionFailure("holdPort: bind: \(String(cString: strerror(error.code)))")
    }
    heldPorts.withLock { $0[held.port] = held.fd }
    return held.port
}

/// The errno of a failed socket call.
public struct SocketErrno: Error {
    public let code: Int32
}

/// A TCP socket bound to 127.0.0.1:`port` (0: any free port), close-on-exec, not listening, with each SOL_SOCKET
/// option of `options` set; returns it and the port bound. The one loopback bind of the test support.
public func bindLoopback(port: UInt16 = 0, options: [Int32]) throws(SocketErrno) -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SocketErrno(code: errno) }
    var one: Int32 = 1
    for option in options { setsockopt(fd, SOL_SOCKET, option, &one, socklen_t(MemoryLayout<Int32>.size)) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard ok else {
        let code = errno
        Glibc.close(fd)
        throw SocketErrno(code: code)
    }
    return (fd, UInt16(bigEndian: address.sin_port))
}

/// A TCP port on 127.0.0.1 that refuses connections until the test starts its own server there with
/// `FakeServer(port:)` or `TestServer(port:)`, which bind it beside the holding socket and then close that.
public func unusedPort() -> UInt16 { holdPort() }

/// A TCP port on 127.0.0.1 that refuses connections for the rest of the run: a server that must stay down.
public func refusedPort() -> UInt16 { holdPort() }

/// Whether `unusedPort()` or `refusedPort()` holds `port` now.
public func isHeldPort(_ port: UInt16) -> Bool { port != 0 && heldPorts.withLock { $0[port] != nil } }

/// Closes the socket holding `port` for `unusedPort()`, once a test server has bound the port (no-op otherwise).
public func releaseHeldPort(_ port: UInt16) {
    if let fd = heldPorts.withLock({ $0.removeValue(forKey: port) }) { Glibc.close(fd) }
}
