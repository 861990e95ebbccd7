import AsyncComCore
import AsyncComEventLoop
import Foundation
import Testing

/// A one-connection echo server and a client driven by IOWatchers on one loop: the client sends `message`,
/// the server echoes it, the client stops the loop once it has read it all back.
private final class EchoExchange {
    let loop: EventLoop
    let message: String
    var listener: IOWatcher?
    var serverConnection: IOWatcher?
    var client: IOWatcher?
    let serverBuffer = ByteBuffer()
    let clientOut = ByteBuffer()
    let clientIn = ByteBuffer()
    var failure: String?

    init(loop: EventLoop, message: String) {
        self.loop = loop
        self.message = message
    }

    func fail(_ why: String) {
        failure = why
        loop.stop()
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

        let clientFD = try Socket.connect(endpoint)
        Socket.setNoDelay(fd: clientFD)
        clientOut.append(string: message)
        client = IOWatcher(loop: loop, fd: clientFD) { [unowned self] readable, writable in
            self.clientEvent(fd: clientFD, readable: readable, writable: writable)
        }
        client!.setInterest(read: true, write: true)
    }

    private func serve(_ fd: Int32) {
        serverConnection = IOWatcher(loop: loop, fd: fd) { [unowned self] readable, writable in
            do {
                if readable {
                    guard let n = try Socket.read(fd: fd, into: self.serverBuffer, chunk: 4096) else { return }
                    if n == 0 {
                        // Peer closed: cancel and release from inside our own callback, then close.
                        self.serverConnection?.cancel()
                        self.serverConnection = nil
                        Socket.close(fd: fd)
                        return
                    }
                }
                if !self.serverBuffer.isEmpty { _ = try Socket.write(fd: fd, from: self.serverBuffer) }
                self.serverConnection?.setInterest(read: true, write: !self.serverBuffer.isEmpty)
            } catch {
                self.fail("server: \(error)")
            }
        }
        serverConnection!.setInterest(read: true, write: false)
    }

    private func clientEvent(fd: Int32, readable: Bool, writable: Bool) {
        do {
            if writable {
                let result = Socket.connectResult(fd: fd)
                guard result == 0 else { return fail("connect: errno \(result)") }
                _ = try Socket.write(fd: fd, from: clientOut)
                client?.setInterest(read: true, write: !clientOut.isEmpty)
            }
            if readable {
                guard let n = try Socket.read(fd: fd, into: clientIn, chunk: 16) else { return }
                if n == 0 { return fail("server closed early") }
                if clientIn.readableBytes >= message.utf8.count {
                    client?.cancel()
                    client = nil
                    Socket.close(fd: fd)
                    loop.stop()
                }
            }
        } catch {
            fail("client: \(error)")
        }
    }
}

@Suite("Socket") struct SocketTests {
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
        #expect(exchange.clientIn.readableString == message)
        exchange.listener?.cancel()
        exchange.serverConnection?.cancel()
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
        #expect(exchange.clientIn.readableString == "hello over unix\n")
        exchange.listener?.cancel()
        exchange.serverConnection?.cancel()
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
