import AsyncComCore

/// How an `AsyncComClient` job talks to its servers. Every limit has a sane default; `validate()` names the
/// first bad field.
public struct ClientConfiguration: Sendable, Equatable {
    /// The servers to spread commands over, by device (one device's commands go to one server while it is up).
    public var servers: [Endpoint]
    /// Commands per request. Clamped to the server's advertised `max_items`.
    public var batch: Int
    /// Requests in flight per connection at most (pipelining depth), on top of what the server admits
    /// (`window * batch <= max_inflight`) and `maxInflight`. nil (the default): adaptive, as many as the server
    /// admits within `maxInflight`.
    public var window: Int?
    /// Connections opened to each server. nil (the default): one, and one per server reactor once the server
    /// reads slower than this client writes (HELLO `reactors=`, `reactor=`; a bounded number of attempts, see
    /// `JobSummary.servers[].reactorsCovered`), and more when the server's `max_inflight` per connection leaves
    /// part of `maxInflight` unused.
    public var connectionsPerServer: Int?
    /// Commands in flight (pulled and not answered yet) in the whole job at most: the client's memory budget,
    /// about 40 bytes per command here (more with per-command results) and about 12 in the asynccom server.
    public var maxInflight: Int
    /// Seconds to wait for a request's reply before re-sending it (also bounds the HELLO handshake).
    public var requestTimeout: Double
    /// Re-sends after a timeout before the request's commands fail (`timeout after <retries+1> attempts`).
    public var retries: Int
    /// Seconds to keep reconnecting (backoff 50 ms doubling to 1 s) to a server that is not up, counted from
    /// the start of the job or from the last time the server answered. After that the server counts as down:
    /// its commands fail over to the other servers, or fail when none is left.
    public var connectTimeout: Double
    /// Deliver per-command results (`onResult`, `results(source:)`) in input order: a reorder buffer holds
    /// early results, and pulling pauses while the oldest undelivered command is more than
    /// `max(4 x the commands its connections hold, 1024)` commands behind (at most `2 x maxInflight`), so memory stays bounded
    /// even when one request is slow. When false, results are delivered as replies arrive. No effect without
    /// per-command results.
    public var ordered: Bool
    /// TCP_NOTSENT_LOWAT of each TCP connection in bytes; 0 keeps the kernel's default (unlimited). Requests
    /// are stamped when handed to the socket, and a server's wait starts when it reads them: written bytes the
    /// kernel cannot send yet (the server reads slower than this client writes) would count as lateness. A small
    /// limit keeps them in the engine's queue, unstamped, instead. Bytes already sent are not limited by it.
    public var sendLowWater: Int
    /// Sent as `HELLO 1 token=<token>` to servers that require one (`--auth-token-file`); nil sends `HELLO 1`.
    public var token: String? = nil
    /// CA certificates (PEM) that `tls://` servers' certificates must chain to; nil: the system's trust store.
    /// The certificate must also name the server's host (or IP address) as given in its endpoint.
    public var tlsCAFile: String? = nil

    public init(
        servers: [Endpoint] = [.default],
        batch: Int = ClientConfiguration.defaultBatch,
        window: Int? = nil,
        connectionsPerServer: Int? = nil,
        maxInflight: Int = ClientConfiguration.defaultMaxInflight,
        requestTimeout: Double = ClientConfiguration.defaultRequestTimeout,
        retries: Int = ClientConfiguration.defaultRetries,
        connectTimeout: Double = ClientConfiguration.defaultConnectTimeout,
        ordered: Bool = false,
        sendLowWater: Int = ClientConfiguration.defaultSendLowWater
    ) {
        self.servers = servers
        self.batch = batch
        self.window = window
        self.connectionsPerServer = connectionsPerServer
        self.maxInflight = maxInflight
        self.requestTimeout = requestTimeout
        self.retries = retries
        self.connectTimeout = connectTimeout
        self.ordered = ordered
        self.sendLowWater = sendLowWater
    }

    public static let defaultSendLowWater = 16 << 10
    /// Seconds a connection's output may stay unwritten (the server reads slower than this client writes) before
    /// the server counts as lagging and, with an adaptive connection count, each of its reactors gets a connection.
    public static let serverLagSeconds = 0.05
    /// Most connections an adaptive count opens to one server for the in-flight budget.
    public static let maxBudgetConnectionsPerServer = 8
    public static let defaultBatch = 16
    /// 8 Mi commands: more than the client sends in a second on 2 cores, so a job of 1 s commands runs at the
    /// send rate (10,000,000 x 1 s: 4.0-5.8 s against 5.0-6.3 s at 4 Mi on a loaded 2-core machine), and a
    /// 10,000,000-command job still keeps the client (225 MiB peak) and the server (78 MiB) under 512 MiB.
    public static let defaultMaxInflight = 8 << 20
    public static let defaultRequestTimeout = 30.0
    public static let defaultRetries = 3
    public static let defaultConnectTimeout = 10.0
    /// Largest `maxInflight`.
    public static let maxMaxInflight = 1 << 30

    /// Upper bounds that keep one job's memory and file descriptors sane whatever the caller passes.
    public static let maxBatch = 65_536
    /// Largest `window`.
    public static let maxWindow = 1 << 20
    /// Largest `connectionsPerServer`.
    public static let maxConnectionsPerServer = 256
    /// Most `servers`.
    public static let maxServers = 256
    /// Largest `retries`.
    public static let maxRetries = 1_000
    /// One day: a longer timeout is surely a typo.
    public static let maxSeconds = 86_400.0

    /// Throws `ClientError.invalidConfiguration` naming the first field out of range.
    public func validate() throws(ClientError) {
        func bad(_ message: String) -> ClientError { .invalidConfiguration(message) }
        if servers.isEmpty { throw bad("at least one server is required") }
        if servers.count > Self.maxServers { throw bad("at most \(Self.maxServers) servers") }
        if let token, token.isEmpty || token.count > AuthTokens.maxTokenLength
            || token.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F }) {
            throw bad("the token must be 1-\(AuthTokens.maxTokenLength) printable ASCII characters without blanks")
        }
        do {
            _ = try ClientTransport.context(for: self)
        } catch {
            throw bad("TLS: \(error)")
        }
        if batch < 1 || batch > Self.maxBatch { throw bad("batch must be 1...\(Self.maxBatch), got \(batch)") }
        if let window, window < 1 || window > Self.maxWindow { throw bad("window must be 1...\(Self.maxWindow), got \(window)") }
        if let connectionsPerServer, connectionsPerServer < 1 || connectionsPerServer > Self.maxConnectionsPerServer {
            throw bad("connections per server must be 1...\(Self.maxConnectionsPerServer), got \(connectionsPerServer)")
        }
        if maxInflight < 1 || maxInflight > Self.maxMaxInflight {
            throw bad("max in-flight commands must be 1...\(Self.maxMaxInflight), got \(maxInflight)")
        }
        if retries < 0 || retries > Self.maxRetries { throw bad("retries must be 0...\(Self.maxRetries), got \(retries)") }
        if !(requestTimeout > 0 && requestTimeout <= Self.maxSeconds) {
            throw bad("request timeout must be > 0 and <= \(Int(Self.maxSeconds)) seconds, got \(requestTimeout)")
        }
        if sendLowWater < 0 || sendLowWater > 1 << 30 {
            throw bad("send low water must be 0 (kernel default)...\(1 << 30) bytes, got \(sendLowWater)")
        }
        if !(connectTimeout >= 0 && connectTimeout <= Self.maxSeconds) {
            throw bad("connect timeout must be 0...\(Int(Self.maxSeconds)) seconds, got \(connectTimeout)")
        }
    }
}

/// Errors that end a job early (per-command failures are results, not errors).
public enum ClientError: Error, Sendable, CustomStringConvertible {
    /// A configuration field out of range (`ClientConfiguration.validate()`), named in the message.
    case invalidConfiguration(String)
    /// The command source threw (an unreadable input file, a line too long, a read error).
    case source(any Error)
    /// The engine could not start (event loop or thread creation failed).
    case startup(String)

    /// The message alone (for `source`, the source's own error, e.g. `file:line: message`).
    public var description: String {
        switch self {
        case .invalidConfiguration(let m): return "invalid configuration: \(m)"
        case .source(let e): return "\(e)"
        case .startup(let m): return "cannot start the client: \(m)"
        }
    }
}
