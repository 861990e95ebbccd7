import AsyncComCore
import AsyncComEventLoop
import Foundation
import Testing

/// An echo server and `clientCount` clients driven by IOWatchers on one loop: each client sends `message` and
/// closes once it has read it back; the server closes each connection on EOF, from inside its read callback.
/// The loop stops when every client got its echo and the server has closed every connection.
private final class EchoExchange {
    private final class Client {
        let fd: Int32
        var watcher: IOWatcher?
        let output = ByteBuffer()
        let input = ByteBuffer()
        init(fd: Int32) { self.fd = fd }
    }

    let loop: EventLoop
    let message: String
    let clientCount: Int
    private var listener: IOWatcher?
    private var serverConnections: [Int32: IOWatcher] = [:]
    private var serverBuffers: [Int32: ByteBuffer] = [:]
    private var clients: [Int32: Client] = [:]
    private(set) var echoes: [String] = []
    private(set) var serverClosed = 0
    private(set) var failure: String?

    init(loop: EventLoop, message: String, clientCount: Int = 1) {
        self.loop = loop
        self.message = message
        self.clientCount = clientCount
    }

    deinit {
        listener?.cancel()
        for (fd, watcher) in serverConnections { watcher.cancel(); Socket.close(fd: fd) }
        for client in clients.values { client.watcher?.cancel(); Socket.close(fd: client.fd) }
    }

    private func fail(_ why: String) {
        if failure == nil { failure = why }
        loop.stop()
    }

    private func checkDone() {
        if echoes.count == clientCount && serverClosed == clientCount { loop.stop() }
    }

    func start(listenFD: Int32, connectTo endpoint: Endpoint) throws {
        listener = IOWatcher(loop: loop, fd: listenFD) { [unowned self] readable, _ in
            guard readable else { return }
            do {
                while let fd = try Socket.accept(fd: listenFD) { self.serve(fd) }
            } catch {
                self.fail("accept: \(error)")
            }
        }
        listener!.setInterest(read: true, write: false)

        for _ in 0..<clientCount {
            let client = Client(fd: try Socket.connect(endpoint))
            Socket.setNoDelay(fd: client.fd)
            client.output.append(string: message)
            client.watcher = IOWatcher(loop: loop, fd: client.fd) { [unowned self, unowned client] readable, writable in
                self.clientEvent(client, readable: readable, writable: writable)
            }
            client.watcher!.setInterest(read: true, write: true)
            clients[client.fd] = client
        }
    }

    private func serve(_ fd: Int32) {
        let buffer = ByteBuffer()
        serverBuffers[fd] = buffer
        let watcher = IOWatcher(loop: loop, fd: fd) { [unowned self] readable, writable in
            do {
                if readable {
                    guard let n = try Socket.read(fd: fd, into: buffer, chunk: 4096) else { return }
                    if n == 0 {
                        // Peer closed: cancel and release from inside our own callback, then close.
                        self.serverConnections[fd]?.cancel()
                        self.serverConnections[fd] = nil
                        self.serverBuffers[fd] = nil
                        Socket.close(fd: fd)
                        self.serverClosed += 1
                        return self.checkDone()
                    }
                }
                if !buffer.isEmpty { _ = try Socket.write(fd: fd, from: buffer) }
                self.serverConnections[fd]?.setInterest(read: true, write: !buffer.isEmpty)
            } catch {
                self.fail("server: \(error)")
            }
        }
        watcher.setInterest(read: true, write: false)
        serverConnections[fd] = watcher
    }

    private func clientEvent(_ client: Client, readable: Bool, writable: Bool) {
        do {
            if writable {
                let result = Socket.connectResult(fd: client.fd)
                guard result == 0 else { return fail("connect: errno \(result)") }
                _ = try Socket.write(fd: client.fd, from: client.output)
                client.watcher?.setInterest(read: true, write: !client.output.isEmpty)
            }
            if readable {
                guard let n = try Socket.read(fd: client.fd, into: client.input, chunk: 16) else { return }
                if n == 0 { return fail("server closed early") }
                if client.input.readableBytes >= message.utf8.count {
                    echoes.append(client.input.readableString)
                    client.watcher?.cancel()
                    client.watcher = nil
                    clients[client.fd] = nil  // releases the client (and its watcher) inside its own callback
                    Socket.close(fd: client.fd)
                    checkDone()
                }
            }
        } catch {
            fail("client: \(error)")
        }
    }
}

/// A connected loopback TCP pair: (client, the server's accepted end).
private func connectedPair() throws -> (Int32, Int32) {
    let listenFD = try Socket.listen(.tcp(host: "127.0.0.1", port: 0), reusePort: false)
    defer { Socket.close(fd: listenFD) }
    let client = try Socket.connect(try Socket.localEndpoint(fd: listenFD))
    var server: Int32?
    let deadline = EventLoop.monotonicNanos() + 10_000_000_000
    while server == nil && EventLoop.monotonicNanos() < deadline { server = try Socket.accept(fd: listenFD) }
    guard let server else {
        Socket.close(fd: client)
        throw SystemError("accept", errno: ETIMEDOUT)
    }
    return (client, server)
}

@Suite("Socket") struct SocketTests {
    @Test func notSentLowWaterIsSetAndReadBack() throws {
        let fd = try Socket.listen(.tcp(host: "127.0.0.1", port: 0), reusePort: false)
        defer { Socket.close(fd: fd) }
        Socket.setNotSentLowWater(fd: fd, bytes: 16 << 10)
        #expect(Socket.notSentLowWater(fd: fd) == 16 << 10)
    }

    @Test func receiveBufferIsSetAndReadBack() throws {
        let fd = try Socket.listen(.tcp(host: "127.0.0.1", port: 0), reusePort: false)
        defer { Socket.close(fd: fd) }
        let before = try #require(Socket.receiveBuffer(fd: fd))
        let wanted = before == 64 << 10 ? 96 << 10 : 64 << 10
        Socket.setReceiveBuffer(fd: fd, bytes: wanted)
        // Linux doubles the value for its bookkeeping.
        #expect(Socket.receiveBuffer(fd: fd) == 2 * wanted)
    }

    @Test("readStamped tells when the bytes reached the socket, not when they were read")
    func receiveTimestamps() throws {
        let (client, fd) = try connectedPair()
        defer { Socket.close(fd: client); Socket.close(fd: fd) }
        Socket.enableReceiveTimestamps(fd: fd)
        // The kernel turns stamping on asynchronously (a static key flipped by a work item): until it is on,
        // segments arrive unstamped. Exchange single bytes until one is stamped.
        let out = ByteBuffer()
        let warmup = ByteBuffer()
        var stamped = false
        let warmDeadline = EventLoop.monotonicNanos() + 10_000_000_000
        while !stamped && EventLoop.monotonicNanos() < warmDeadline {
            out.append("w")
            while !out.isEmpty { _ = try Socket.write(fd: client, from: out) }
            var got: (count: Int, stamp: Int64)?
            while got == nil && EventLoop.monotonicNanos() < warmDeadline { got = try Socket.readStamped(fd: fd, into: warmup, chunk: 64) }
            stamped = (got?.stamp ?? 0) != 0
        }
        #expect(stamped, "no receive stamp within 10 s")
        out.append("PING\n")
        let sent = EventLoop.realtimeNanos()
        while !out.isEmpty { _ = try Socket.write(fd: client, from: out) }
        // The bytes wait in the kernel while this thread sleeps: that wait is what the stamp must show.
        usleep(20_000)
        let input = ByteBuffer()
        var got: (count: Int, stamp: Int64)?
        let readDeadline = EventLoop.monotonicNanos() + 10_000_000_000
        while got == nil && EventLoop.monotonicNanos() < readDeadline { got = try Socket.readStamped(fd: fd, into: input, chunk: 64) }
        let read = EventLoop.realtimeNanos()
        let result = try #require(got)
        #expect(result.count == 5 && input.readableString == "PING\n")
        #expect(result.stamp >= sent - 1_000_000, "stamped before it was sent")
        #expect(read - result.stamp >= 20_000_000, "the 20 ms in the kernel do not show: \(read - result.stamp) ns")
    }

    @Test func readStampedWithoutTimestampsGivesNoStamp() throws {
        let (client, fd) = try connectedPair()
        defer { Socket.close(fd: client); Socket.close(fd: fd) }
        let deadline = EventLoop.monotonicNanos() + 10_000_000_000
        let out = ByteBuffer()
        out.append("x")
        while !out.isEmpty { _ = try Socket.write(fd: client, from: out) }
        var got: (count: Int, stamp: Int64)?
        while got == nil && EventLoop.monotonicNanos() < deadline { got = try Socket.readStamped(fd: fd, into: ByteBuffer(), chunk: 64) }
        #expect(got?.count == 1 && got?.stamp == 0)
    }

    @Test func listenOnPortZeroReadsBackThePort() throws {
        let fd = try Socket.listen(.tcp(host: "127.0.0.1", port: 0), reusePort: false)
        defer { Socket.close(fd: fd) }
        guard case .tcp(let host, let port) = try Socket.localEndpoint(fd: fd) else {
            Issue.record("not a TCP endpoint")
            return
        }
        #expect(host == "127.0.0.1")
        #expect(port != 0)
    }

    @Test func twoListenersShareAPortWithReusePort() throws {
        let first = try Socket.listen(.tcp(host: "127.0.0.1", port: 0), reusePort: true)
        defer { Socket.close(fd: first) }
        guard case .tcp(_, let port) = try Socket.localEndpoint(fd: first) else {
            Issue.record("not a TCP endpoint")
            return
        }
        let second = try Socket.listen(.tcp(host: "127.0.0.1", port: port), reusePort: true)
        defer { Socket.close(fd: second) }
        #expect(try Socket.localEndpoint(fd: second) == .tcp(host: "127.0.0.1", port: port))
    }

    @Test func sameportWithoutReusePortFails() throws {
        let first = try Socket.listen(.tcp(host: "127.0.0.1", port: 0), reusePort: false)
        defer { Socket.close(fd: first) }
        guard case .tcp(_, let port) = try Socket.localEndpoint(fd: first) else {
            Issue.record("not a TCP endpoint")
            return
        }
        #expect(throws: SystemError.self) { try Socket.listen(.tcp(host: "127.0.0.1", port: port), reusePort: false) }
    }

    @Test func unresolvableHostThrowsANamedError() {
        do {
            _ = try Socket.listen(.tcp(host: "no-such-host.invalid", port: 0), reusePort: false)
            Issue.record("listen succeeded")
        } catch {
            #expect(error.operation.contains("no-such-host.invalid"))
        }
    }

    @Test func tcpEchoThroughIOWatchers() throws {
        let loop = try EventLoop()
        let listenFD = try Socket.listen(.tcp(host: "127.0.0.1", port: 0), reusePort: false)
        defer { Socket.close(fd: listenFD) }
        let endpoint = try Socket.localEndpoint(fd: listenFD)
        // Larger than one read chunk and than the client's 16-byte reads: exercises partial reads.
        let message = String(repeating: "device 10.0.0.1 command\n", count: 2000)
        let exchange = EchoExchange(loop: loop, message: message)
        try exchange.start(listenFD: listenFD, connectTo: endpoint)
        #expect(runWithWatchdog(loop))
        #expect(exchange.failure == nil)
        #expect(exchange.echoes == [message])
    }

    @Test func manyTcpClientsEchoAndCloseConcurrently() throws {
        let loop = try EventLoop()
        let listenFD = try Socket.listen(.tcp(host: "127.0.0.1", port: 0), reusePort: false)
        defer { Socket.close(fd: listenFD) }
        let exchange = EchoExchange(loop: loop, message: "ping\n", clientCount: 50)
        try exchange.start(listenFD: listenFD, connectTo: try Socket.localEndpoint(fd: listenFD))
        #expect(runWithWatchdog(loop))
        #expect(exchange.failure == nil)
        #expect(exchange.echoes == Array(repeating: "ping\n", count: 50))
        #expect(exchange.serverClosed == 50)
    }

    @Test func ipv6LoopbackEcho() throws {
        let listenFD: Int32
        do {
            listenFD = try Socket.listen(.tcp(host: "::1", port: 0), reusePort: false)
        } catch {
            // No IPv6 loopback in this environment. (A `catch where` on the typed error crashes swiftc 6.3.1.)
            if error.errno == EADDRNOTAVAIL || error.errno == EAFNOSUPPORT { return }
            throw error
        }
        defer { Socket.close(fd: listenFD) }
        let endpoint = try Socket.localEndpoint(fd: listenFD)
        guard case .tcp(let host, let port) = endpoint else {
            Issue.record("not a TCP endpoint")
            return
        }
        #expect(host == "::1")
        #expect(port != 0)
        let loop = try EventLoop()
        let exchange = EchoExchange(loop: loop, message: "over v6\n")
        try exchange.start(listenFD: listenFD, connectTo: endpoint)
        #expect(runWithWatchdog(loop))
        #expect(exchange.failure == nil)
        #expect(exchange.echoes == ["over v6\n"])
    }

    @Test func unixEchoThroughIOWatchers() throws {
        let dir = try makeTempDirectory()
        defer { rmdir(dir) }
        let path = dir + "/echo.sock"
        defer { unlink(path) }
        let loop = try EventLoop()
        let listenFD = try Socket.listen(.unix(path: path), reusePort: false)
        defer { Socket.close(fd: listenFD) }
        #expect(try Socket.localEndpoint(fd: listenFD) == .unix(path: path))
        let exchange = EchoExchange(loop: loop, message: "hello over unix\n")
        try exchange.start(listenFD: listenFD, connectTo: .unix(path: path))
        #expect(runWithWatchdog(loop))
        #expect(exchange.failure == nil)
        #expect(exchange.echoes == ["hello over unix\n"])
    }

    @Test func unixListenReplacesAStaleSocketButNotARegularFile() throws {
        let dir = try makeTempDirectory()
        defer { rmdir(dir) }
        let path = dir + "/stale.sock"
        defer { unlink(path) }
        let first = try Socket.listen(.unix(path: path), reusePort: false)
        Socket.close(fd: first)  // leaves the socket file behind
        let second = try Socket.listen(.unix(path: path), reusePort: false)
        Socket.close(fd: second)
        unlink(path)
        let file = open(path, O_CREAT | O_WRONLY, 0o600)
        #expect(file >= 0)
        close(file)
        #expect(throws: SystemError.self) { try Socket.listen(.unix(path: path), reusePort: false) }
    }

    @Test func unixListenDoesNotStealALiveServersSocket() throws {
        let dir = try makeTempDirectory()
        defer { rmdir(dir) }
        let path = dir + "/live.sock"
        defer { unlink(path) }
        let live = try Socket.listen(.unix(path: path), reusePort: false)
        defer { Socket.close(fd: live) }
        do {
            let second = try Socket.listen(.unix(path: path), reusePort: false)
            Socket.close(fd: second)
            Issue.record("a second listener took over a live socket path")
        } catch {
            #expect(error.errno == EADDRINUSE)
        }
        // The live listener still owns the name: a client reaches it.
        let client = try Socket.connect(.unix(path: path))
        Socket.close(fd: client)
        var accepted: Int32? = nil
        let deadline = EventLoop.monotonicNanos() + 5_000_000_000
        while accepted == nil && EventLoop.monotonicNanos() < deadline { accepted = try Socket.accept(fd: live) }
        #expect(accepted != nil)
        if let accepted { Socket.close(fd: accepted) }
    }

    @Test func connectToAClosedPortFails() throws {
        // Bind a port, then close it: nothing listens there now.
        let probe = try Socket.listen(.tcp(host: "127.0.0.1", port: 0), reusePort: false)
        let endpoint = try Socket.localEndpoint(fd: probe)
        Socket.close(fd: probe)

        let loop = try EventLoop()
        let fd: Int32
        do {
            fd = try Socket.connect(endpoint)
        } catch {
            #expect(error.errno == ECONNREFUSED)
            return
        }
        defer { Socket.close(fd: fd) }
        var result: Int32 = 0
        let watcher = IOWatcher(loop: loop, fd: fd) { _, writable in
            if writable {
                result = Socket.connectResult(fd: fd)
                loop.stop()
            }
        }
        watcher.setInterest(read: false, write: true)
        #expect(runWithWatchdog(loop))
        watcher.cancel()
        #expect(result == ECONNREFUSED)
    }

    @Test func connectToAMissingUnixSocketThrows() throws {
        let dir = try makeTempDirectory()
        defer { rmdir(dir) }
        #expect(throws: SystemError.self) { try Socket.connect(.unix(path: dir + "/nobody.sock")) }
    }

    @Test func writeToAClosedPeerThrowsInsteadOfRaisingSIGPIPE() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        Socket.close(fd: fds[1])
        defer { Socket.close(fd: fds[0]) }
        let buffer = ByteBuffer()
        buffer.append(string: "x")
        do {
            _ = try Socket.write(fd: fds[0], from: buffer)
            Issue.record("write to a closed peer succeeded")
        } catch {
            #expect(error.errno == EPIPE)
        }
    }

    @Test func readReturnsNilWhenNothingIsAvailableAndZeroAtEOF() throws {
        var fds: [Int32] = [0, 0]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        #expect(socketpair(AF_UNIX, type, 0, &fds) == 0)
        defer { Socket.close(fd: fds[0]) }
        let buffer = ByteBuffer(capacity: 16)
        #expect(try Socket.read(fd: fds[0], into: buffer, chunk: 1024) == nil)
        #expect(buffer.writableBytes >= 1024)
        Socket.shutdownWrite(fd: fds[1])
        #expect(try Socket.read(fd: fds[0], into: buffer, chunk: 1024) == 0)
        Socket.close(fd: fds[1])
    }
}
