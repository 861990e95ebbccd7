import AsyncComCore
import AsyncComEventLoop

#if canImport(Glibc)
import Glibc
#endif

/// Everything a `Server` needs to run. Limits bound what any one peer can make the server hold.
public struct ServerConfiguration: Sendable {
    /// The device map every reactor answers from (immutable, shared read-only).
    public var map: DeviceMap
    /// The file `map` was loaded from: `Server.reloadMap()` (SIGHUP) loads it again. nil: not reloadable.
    public var mapFile: String?
    /// Where to listen. TCP endpoints get one SO_REUSEPORT listener per reactor; Unix ones a single listener.
    public var endpoints: [Endpoint]
    /// Reactor threads, each with its own event loop. Default: the number of CPUs the process may run on.
    public var reactors: Int
    /// Whether each reactor thread is bound to a CPU of its own (`ReactorPinning`); off by default.
    public var pinReactors: ReactorPinning = .off
    /// Open connections across all reactors; beyond it a new connection gets `ERR - BUSY` and is closed.
    public var maxConnections: Int
    /// Commands awaiting their reply on one connection before the server stops reading from it.
    public var maxInflightCommands: Int
    /// Longest request line in bytes, terminator included.
    public var maxLine: Int
    /// Most items in one REQ (advertised in HELLO).
    public var maxItems: Int
    /// Seconds a connection may stay silent with nothing in flight and nothing unsent; 0 disables it.
    public var idleTimeout: Double
    /// Unsent reply bytes on one connection before the server stops reading from it.
    public var outputHighWater: Int
    /// SO_RCVBUF of each TCP connection in bytes; 0 keeps the kernel's autotuning. A request's wait starts at
    /// the kernel's receive stamp of the read that brought it, which is the newest byte's: bytes that queued
    /// behind a busy reactor share the stamp of the last ones to arrive, so they start late. A small buffer
    /// makes the client wait instead, before its kernel takes the bytes. Raise it for clients far away (the
    /// window must cover bandwidth x round trip).
    public var receiveBuffer: Int
    /// Least time in seconds between two firings of a reactor's reply timer. Replies falling due closer
    /// together than this go out together, up to this much late: with many distinct waits a timer firing (and
    /// a write) per reply would cost a few microseconds of system calls each. 0 fires at every deadline.
    public var replyCoalescing: Double
    /// Advertised in HELLO as `server=asynccom/<serverVersion>`.
    public var serverVersion: String
    /// When set, a connection must send `HELLO 1 token=<one of these>` as its first line (docs/PROTOCOL.md,
    /// Authentication). `Server.replaceTokens` swaps them while the server runs.
    public var authTokens: AuthTokens?
    /// The file `authTokens` was read from: `Server.reload()` (SIGHUP) reads it again with the map. nil: the
    /// tokens are not reloadable.
    public var authTokenFile: String?
    /// Seconds a connection may take to authenticate (TLS handshake and `HELLO 1 token=...`) before
    /// `ERR - AUTH_TIMEOUT` and close.
    public var authTimeout: Double
    /// Seconds between a wrong token and its `ERR - AUTH_FAILED` and close, so guessing is slow.
    public var authFailureDelay: Double
    /// Connections not yet authenticated, over all reactors. They do not take `maxConnections` slots; beyond
    /// this cap a new connection is refused at once, so they cannot crowd out real clients.
    public var maxUnauthenticated: Int
    /// Allows listening on a non-loopback address without authentication (protected mode off).
    public var insecure: Bool
    /// Certificates for the `tls://` endpoints (required when there is one).
    public var tls: TLSSettings?
    /// Let other servers of the same user listen on the same TCP ports (`SO_REUSEPORT` across processes): the
    /// kernel then spreads new connections over every reactor of every such server. Off: a given port must be
    /// free, so that a second server started by mistake fails instead of taking part of the traffic.
    public var sharePort = false

    /// PEM files for TLS listeners.
    public struct TLSSettings: Sendable, Equatable {
        /// The server's certificate chain.
        public var certificateFile: String
        public var keyFile: String
        /// When set, clients must present a certificate signed by one of these CAs (mutual TLS).
        public var clientCAFile: String?

        public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) {
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.clientCAFile = clientCAFile
        }
    }
    /// Where to serve the HTTP API (`POST /v1/commands`, `/metrics`, `/healthz`, `/readyz`): TCP endpoints,
    /// each with one SO_REUSEPORT listener per reactor. Empty (the default): no HTTP.
    public var httpEndpoints: [Endpoint] = []
    /// Largest HTTP request body in bytes (a longer one gets 413 and the connection closes).
    public var httpMaxBody: Int = ServerConfiguration.defaultHTTPMaxBody
    /// Largest HTTP request line plus headers in bytes (longer: 400 and the connection closes).
    public var httpMaxHeaders: Int = ServerConfiguration.defaultHTTPMaxHeaders

    public static let defaultMaxConnections = 4096
    /// A client's whole default budget (`ClientConfiguration.defaultMaxInflight`) fits one connection: a client
    /// then needs one connection, and one busy reactor, however deep it pipelines (on 2 cores shared with the
    /// client, 10M x 1 s: lateness p99 8.9 ms over one connection vs 17.6 ms over the eight that 1 Mi per
    /// connection made it open). Costs about 12 bytes of server memory per command in flight (that run: 71 MiB
    /// peak with 4.5 M in flight, 21 MiB idle), about 100 MiB for a connection that holds all 8 Mi.
    public static let defaultMaxInflightCommands = 8_388_608
    public static let defaultMaxLine = 65_536
    public static let defaultMaxItems = 1024
    public static let defaultIdleTimeout: Double = 300
    public static let defaultOutputHighWater = 4 << 20
    public static let defaultReplyCoalescing: Double = 0.000_5
    public static let defaultReceiveBuffer = 64 << 10
    public static let defaultServerVersion = AsyncComVersion.string
    public static let defaultAuthTimeout: Double = 10
    public static let defaultAuthFailureDelay: Double = 0.5
    public static let defaultMaxUnauthenticated = 1024
    /// 1 MiB: 1,024 items of the longest form (an IPv6 device and a 64-byte command) fit 8 times over.
    public static let defaultHTTPMaxBody = 1 << 20
    public static let defaultHTTPMaxHeaders = 8 << 10

    /// The number of CPUs this process may run on (its affinity: `taskset`, a cgroup's cpuset), else the number
    /// of processors online; at least 1.
    public static var defaultReactors: Int {
        let allowed = EventLoop.threadCPUs().count
        return max(1, allowed > 0 ? allowed : Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    public init(
        map: DeviceMap,
        mapFile: String? = nil,
        endpoints: [Endpoint] = [.default],
        reactors: Int = ServerConfiguration.defaultReactors,
        maxConnections: Int = ServerConfiguration.defaultMaxConnections,
        maxInflightCommands: Int = ServerConfiguration.defaultMaxInflightCommands,
        maxLine: Int = ServerConfiguration.defaultMaxLine,
        maxItems: Int = ServerConfiguration.defaultMaxItems,
        idleTimeout: Double = ServerConfiguration.defaultIdleTimeout,
        outputHighWater: Int = ServerConfiguration.defaultOutputHighWater,
        replyCoalescing: Double = ServerConfiguration.defaultReplyCoalescing,
        receiveBuffer: Int = ServerConfiguration.defaultReceiveBuffer,
        serverVersion: String = ServerConfiguration.defaultServerVersion,
        authTokens: AuthTokens? = nil,
        authTimeout: Double = ServerConfiguration.defaultAuthTimeout,
        authFailureDelay: Double = ServerConfiguration.defaultAuthFailureDelay,
        maxUnauthenticated: Int = ServerConfiguration.defaultMaxUnauthenticated,
        insecure: Bool = false,
        tls: TLSSettings? = nil
    ) {
        self.map = map
        self.mapFile = mapFile
        self.endpoints = endpoints
        self.reactors = reactors
        self.maxConnections = maxConnections
        self.maxInflightCommands = maxInflightCommands
        self.maxLine = maxLine
        self.maxItems = maxItems
        self.idleTimeout = idleTimeout
        self.outputHighWater = outputHighWater
        self.replyCoalescing = replyCoalescing
        self.receiveBuffer = receiveBuffer
        self.serverVersion = serverVersion
        self.authTokens = authTokens
        self.authTimeout = authTimeout
        self.authFailureDelay = authFailureDelay
        self.maxUnauthenticated = maxUnauthenticated
        self.insecure = insecure
        self.tls = tls
    }

    /// Whether a connection must prove who it is before it may send requests.
    var requiresAuthentication: Bool { authTokens != nil }

    /// Throws `ServerError.invalidConfiguration` naming the first value out of range.
    public func validate() throws(ServerError) {
        func check(_ ok: Bool, _ what: String) throws(ServerError) {
            if !ok { throw .invalidConfiguration(what) }
        }
        try check(!endpoints.isEmpty, "at least one listen endpoint is needed")
        try check((1...1024).contains(reactors), "reactors must be 1...1024 (got \(reactors))")
        try check(maxConnections >= 1 && maxConnections <= 1 << 24,
                  "max connections must be 1...\(1 << 24) (got \(maxConnections))")
        try check(maxInflightCommands >= 1 && maxInflightCommands <= Int(UInt32.max),
                  "max in-flight commands must be 1...\(UInt32.max) (got \(maxInflightCommands))")
        // A line must at least hold `REQ <20-digit id> <item>`; 1 GiB keeps buffer arithmetic far from overflow.
        try check(maxLine >= 64 && maxLine <= 1 << 30, "max line must be 64...\(1 << 30) bytes (got \(maxLine))")
        try check(maxItems >= 1 && maxItems <= 1 << 20, "max items must be 1...\(1 << 20) (got \(maxItems))")
        try check(idleTimeout >= 0 && idleTimeout <= 86_400 * 365, "idle timeout must be 0 (off) or a positive number of seconds")
        try check(replyCoalescing >= 0 && replyCoalescing <= 1,
                  "reply coalescing must be 0...1 seconds (got \(replyCoalescing))")
        try check(receiveBuffer == 0 || (receiveBuffer >= 4096 && receiveBuffer <= 1 << 30),
                  "receive buffer must be 0 (kernel autotuning) or 4096...\(1 << 30) bytes (got \(receiveBuffer))")
        try check(outputHighWater >= 1024, "output high water must be at least 1024 bytes (got \(outputHighWater))")
        try check(authTimeout > 0 && authTimeout <= 3600, "auth timeout must be more than 0 and at most 3600 seconds (got \(authTimeout))")
        try check(authFailureDelay >= 0 && authFailureDelay <= 60,
                  "auth failure delay must be 0...60 seconds (got \(authFailureDelay))")
        try check(maxUnauthenticated >= 1 && maxUnauthenticated <= 1 << 24,
                  "max unauthenticated connections must be 1...\(1 << 24) (got \(maxUnauthenticated))")
        let tlsEndpoints = endpoints.filter(\.isTLS)
        try check(tlsEndpoints.isEmpty || tls != nil,
                  "a tls:// endpoint needs a certificate and a key (--tls-cert, --tls-key)")
        try check(tls == nil || !tlsEndpoints.isEmpty, "TLS certificates were given but no tls:// endpoint")
        // Protected mode (as Redis): a server reachable from other machines must check who connects, by token
        // or by client certificate.
        let checksClients = { (e: Endpoint) in
            self.requiresAuthentication || (e.isTLS && self.tls?.clientCAFile != nil)
        }
        if !insecure, let open = endpoints.first(where: { !$0.isLoopback && !checksClients($0) }) {
            throw .unprotected(endpoint: open.description)
        }
        // The HTTP API checks Bearer tokens (every route but /healthz), not client certificates.
        if !insecure && !requiresAuthentication, let open = httpEndpoints.first(where: { !$0.isLoopback }) {
            throw .unprotected(endpoint: open.description)
        }
        for endpoint in httpEndpoints {
            guard case .tcp = endpoint else {
                throw .invalidConfiguration("HTTP endpoints must be tcp://HOST:PORT (got \(endpoint))")
            }
        }
        try check(httpMaxBody >= 64 && httpMaxBody <= 1 << 30,
                  "HTTP max body must be 64...\(1 << 30) bytes (got \(httpMaxBody))")
        try check(httpMaxHeaders >= 256 && httpMaxHeaders <= 1 << 20,
                  "HTTP max headers must be 256...\(1 << 20) bytes (got \(httpMaxHeaders))")
    }
}

public enum ServerError: Error, CustomStringConvertible, Sendable {
    case invalidConfiguration(String)
    /// Binding or listening on `endpoint` failed.
    case listen(endpoint: String, reason: String)
    /// A reactor could not set up its event loop.
    case reactor(index: Int, reason: String)
    case alreadyStarted
    /// A map reload failed; the message is `FILE:LINE: what is wrong` for a bad file.
    case reload(String)
    /// Protected mode: a non-loopback endpoint without tokens or TLS client certificates.
    case unprotected(endpoint: String)
    /// The TLS certificate, key or client CA file could not be used.
    case tls(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let what): return "invalid configuration: \(what)"
        case .listen(let endpoint, let reason): return "cannot listen on \(endpoint): \(reason)"
        case .reactor(let index, let reason): return "reactor \(index) failed to start: \(reason)"
        case .alreadyStarted: return "the server was already started"
        case .reload(let message): return message
        case .unprotected(let endpoint):
            return "refusing to listen on \(endpoint) without authentication (protected mode): anyone who reaches it "
                + "could query the whole device map. Give --auth-token-file FILE (or listen on tls:// with "
                + "--tls-client-ca), listen on 127.0.0.1 or a Unix socket, or add --insecure if the network is trusted"
        case .tls(let reason): return "TLS: \(reason)"
        }
    }
}
