import AsyncComTestSupport
import Testing

/// `refusedPort()` names a server that is down, `unusedPort()` a port the test starts its own server on later. Both
/// used to bind, read back and close a port; in parallel runs another test's server got that port in between: the
/// "dead" server answered (EngineFakeServerTests.commandsFailOverToTheServerThatIsUp, servers[0].ok != 0), and a
/// server started later got EADDRINUSE (EndToEndTests.serverStartedAfterTheClient). The port is now held.
@Suite("refusedPort: a port that stays refusing") struct RefusedPortTests {
    /// Binds 127.0.0.1:`port` the way a listener without SO_REUSEPORT would (SO_REUSEADDR); returns errno or 0.
    private func bindError(_ port: UInt16) -> Int32 {
        do {
            close(try bindLoopback(port: port, options: [SO_REUSEADDR]).fd)
            return 0
        } catch {
            return error.code
        }
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
