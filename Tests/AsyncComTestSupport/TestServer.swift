import AsyncComCore
import AsyncComServer

/// The real server in this process, on 127.0.0.1 (port 0 unless given), with a map from text or a file.
/// Stopped by `stop()` or at the latest by `deinit`.
public final class TestServer: @unchecked Sendable {
    public let server: Server
    public let port: UInt16
    public let endpoints: [Endpoint]

    public init(map: DeviceMap, port: UInt16 = 0, reactors: Int = 2, extraEndpoints: [Endpoint] = [],
                configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        var configuration = ServerConfiguration(
            map: map, endpoints: [.tcp(host: "127.0.0.1", port: port)] + extraEndpoints, reactors: reactors)
        // A port `unusedPort()` holds (SO_REUSEPORT, not listening) is joined, as --share-port does.
        if isHeldPort(port) { configuration.sharePort = true }
        configure(&configuration)
        server = Server(configuration: configuration)
        endpoints = try server.start()
        guard case .tcp(_, let p) = endpoints[0], p != 0 else { throw TestFailure("no port: \(endpoints)") }
        self.port = p
        releaseHeldPort(p)
    }

    /// A server on a map given as text.
    public convenience init(map text: String, reactors: Int = 2, extraEndpoints: [Endpoint] = [],
                            configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        try self.init(map: try Self.map(text), reactors: reactors, extraEndpoints: extraEndpoints, configure: configure)
    }

    /// A server on the map file at `path`.
    public convenience init(mapFile path: String, port: UInt16 = 0, reactors: Int = 2) throws {
        try self.init(map: try DeviceMap(contentsOfFile: path), port: port, reactors: reactors)
    }

    public static func map(_ text: String) throws -> DeviceMap {
        var t = text
        return try t.withUTF8 { try DeviceMap(parsing: UnsafeRawBufferPointer($0), fileName: "test-map") }
    }

    /// The first (TCP) endpoint.
    public var endpoint: Endpoint { endpoints[0] }

    public func client(receiveBuffer: Int32? = nil, sendBuffer: Int32? = nil) throws -> LineClient {
        try LineClient(port: port, receiveBuffer: receiveBuffer, sendBuffer: sendBuffer)
    }

    public func stop() {
        server.beginShutdown()
        server.waitUntilStopped()
    }

    deinit { stop() }
}
