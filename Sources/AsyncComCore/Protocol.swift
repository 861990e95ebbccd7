/// Wire protocol v1 (docs/PROTOCOL.md): pure parsing and formatting, no sockets.
public enum ProtocolErrorCode: String, Sendable, CaseIterable {
    case unknownVerb = "UNKNOWN_VERB"
    case badID = "BAD_ID"
    case noItems = "NO_ITEMS"
    case tooManyItems = "TOO_MANY_ITEMS"
    case badItem = "BAD_ITEM"
    case unsupportedVersion = "UNSUPPORTED_VERSION"
    case badRequest = "BAD_REQUEST"
    case lineTooLong = "LINE_TOO_LONG"
    case busy = "BUSY"
    case idleTimeout = "IDLE_TIMEOUT"
}

/// What the server advertises in its HELLO reply.
public struct HelloInfo: Sendable, Equatable {
    public var serverVersion: String
    public var maxItems: Int
    public var maxLine: Int
    public var maxInflight: Int
    public var reactors: Int
    public var reactor: Int
    public init(serverVersion: String, maxItems: Int, maxLine: Int, maxInflight: Int, reactors: Int, reactor: Int) {
        self.serverVersion = serverVersion
        self.maxItems = maxItems
        self.maxLine = maxLine
        self.maxInflight = maxInflight
        self.reactors = reactors
        self.reactor = reactor
    }
}

public enum ServerProtocol {
    public static let version: UInt64 = 1

    public enum Outcome: Equatable, Sendable {
        /// Blank line: nothing to send.
        case empty
        /// A `RES` line was appended to `reply`; it is due `waitNanos` after arrival (the slowest item).
        case request(id: UInt64, waitNanos: UInt64, commands: Int, unknown: Int)
        /// An `ERR` line was appended to `reply`; `close` when the connection must close after flushing it.
        case error(ProtocolErrorCode, close: Bool)
        /// `HELLO 1`: the caller appends its HELLO line with `appendHello`. (Other versions give `.error`.)
        case hello
        /// A `PONG` line was appended.
        case ping
        /// The caller appends its STATS line.
        case stats
        /// `BYE` was appended; the caller closes after flushing.
        case quit
    }

    /// Handles one request line (terminator already stripped), appending at most one reply line to `reply`.
    /// Looks every item of a REQ up in `map`. Allocates nothing for REQ lines.
    public static func handle(line: UnsafeRawBufferPointer, map: DeviceMap, maxItems: Int, reply: ByteBuffer) -> Outcome {
        fatalError("contract stub: implemented by the core work")
    }

    public static func appendHello(_ info: HelloInfo, to buffer: ByteBuffer) {
        fatalError("contract stub: implemented by the core work")
    }

    /// `ERR <id or -> <CODE> <message>\n`
    public static func appendError(id: UInt64?, code: ProtocolErrorCode, message: String, to buffer: ByteBuffer) {
        fatalError("contract stub: implemented by the core work")
    }

    /// `STATS k=v k=v ...\n` from ordered pairs.
    public static func appendStats(_ fields: [(String, UInt64)], to buffer: ByteBuffer) {
        fatalError("contract stub: implemented by the core work")
    }
}

public enum ItemResult: Equatable, Sendable {
    case value(Int64)
    case unknown
}

public enum ServerReply: Equatable, Sendable {
    /// `RES <id> ...`: the results were written to the `results` array, one per item.
    case results(id: UInt64)
    case error(id: UInt64?, code: String, message: String)
    case hello(fields: [String: String])
    case pong(token: String?)
    case stats(fields: [String: String])
    case bye
    /// Not a valid v1 reply line.
    case malformed(reason: String)
}

public enum ClientProtocol {
    public static func appendHello(to buffer: ByteBuffer) {
        fatalError("contract stub: implemented by the core work")
    }
    /// `REQ <id>`; follow with `appendItem` for each item and `endRequest`.
    public static func beginRequest(id: UInt64, to buffer: ByteBuffer) {
        fatalError("contract stub: implemented by the core work")
    }
    /// ` <item>` where item is `device:command` text as it should go on the wire.
    public static func appendItem(_ item: UnsafeRawBufferPointer, to buffer: ByteBuffer) {
        fatalError("contract stub: implemented by the core work")
    }
    public static func endRequest(to buffer: ByteBuffer) {
        fatalError("contract stub: implemented by the core work")
    }

    /// Parses one reply line (terminator stripped). For `RES`, `results` is cleared and filled in item order
    /// (its capacity is reused, so steady-state parsing allocates nothing).
    public static func parse(line: UnsafeRawBufferPointer, results: inout [ItemResult]) -> ServerReply {
        fatalError("contract stub: implemented by the core work")
    }
}
