import AsyncComTestSupport
import Testing

/// `refusedPort()` is how client tests name a server that is down. With a port bound, read back and closed
/// (`unusedPort()`), another test's listener once got the same port in a parallel run between that close and the
/// client's connect, and the "dead" server answered (EngineFakeServerTests.commandsFailOverToTheServerThatIsUp,
/// servers[0].ok != 0). The port is now held for the run.
@Suite("refusedPort: a port that stays refusing") struct RefusedPortTests {
    /// Binds 127.0.0.1:`port` the way a listener without SO_REUSEPORT would (SO_REUSEADDR); returns errno or 0.
    private func bindError(_ port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0 ? 0 : errno
    }

    @Test func noOtherListenerCanTakeItAndConnectsAreRefused() throws {
        let port = refusedPort()
        #expect(bindError(port) == EADDRINUSE)
        #expect(throws: (any Error).self) { try LineClient(port: port) }
    }

    /// `unusedPort()` for a server the test starts there later: refused until then, then served, and the holding
    /// socket is gone once the server has bound the port.
    @Test func unusedPortRefusesUntilItsServerTakesIt() throws {
        let port = unusedPort()
        #expect(bindError(port) == EADDRINUSE)
        #expect(throws: (any Error).self) { try LineClient(port: port) }
        let server = try FakeServer(port: port, onLine: FakeServer.answering())
        defer { server.stop() }
        #expect(server.port == port)
        #expect(try LineClient(port: port).request("HELLO 1").hasPrefix("HELLO"))
    }
}
