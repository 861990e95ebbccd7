import AsyncComCore
import AsyncComEventLoop
import AsyncComTLS
import Dispatch
import Logging

import Glibc

/// The asynccom gateway server: `reactors` threads, each running its own libevent loop with its own listeners
/// and connections. A connection lives and dies on the reactor that accepted it; reactors share only the
/// read-only device map, the connection count and their published counters.
///
/// TCP endpoints get one SO_REUSEPORT listener per reactor, so the kernel spreads connections over them.
/// A Unix-socket endpoint gets a single listener watched by reactor 0 alone: Linux's SO_REUSEPORT balancing
/// applies to TCP and UDP only, and several loops waking on one shared listener would just race for each
/// accept. Unix sockets are for local tools, so one reactor is plenty; the socket file is removed on shutdown.
public final class Server: Sendable {
    /// The configuration, with the map the reactors answer from now (the one given, or the latest reload).
    public var configuration: ServerConfiguration {
        var c = baseConfiguration
        c.map = shared.maps.current().map
        return c
    }
    /// The configuration with a placeholder map: holding the start-up map here would keep it alive after a
    /// reload (old + new + newer). The live map is `shared.maps`.
    let baseConfiguration: ServerConfiguration
    let logger: Logger
    let shared: ServerShared
    private let lifecycle = Locked(Lifecycle())
    /// One map reload at a time, so at most the old map and the new one exist.
    let reloadLock = Locked(())
    /// Every trigger (SIGHUP, `POST /v1/reload`) runs `reload()` here: never on a reactor, one after the other.
    let reloadQueue = DispatchQueue(label: "asynccom.reload")

    private struct Lifecycle {
        var started = false
        var threads: [pthread_t] = []
        var httpEndpoints: [Endpoint] = []
    }

    public init(configuration: ServerConfiguration, logger: Logger) {
        var base = configuration
        base.map = DeviceMap.placeholder
        self.baseConfiguration = base
        self.logger = logger
        self.shared = ServerShared(configuration: base, map: configuration.map)
    }

    /// A server that logs nothing (tests, embedding).
    public convenience init(configuration: ServerConfiguration) {
        self.init(configuration: configuration, logger: Logger(label: "asynccom-server", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    /// Binds every endpoint, starts the reactors and returns the bound endpoints (with real ports for port 0),
    /// in the order of `configuration.endpoints`. `onStopped` runs on a reactor thread once all have stopped.
    @discardableResult
    public func start(onStopped: (@Sendable () -> Void)? = nil) throws(ServerError) -> [Endpoint] {
        try baseConfiguration.validate()
        let alreadyStarted = lifecycle.withLock { l -> Bool in
            defer { l.started = true }
            return l.started
        }
        if alreadyStarted { throw .alreadyStarted }
        shared.control.withLock { $0.onStopped = onStopped }

        let (perReactor, bound, httpBound) = try bindListeners()
        let threads = try startThreads(listeners: perReactor)
        lifecycle.withLock {
            $0.threads = threads
            $0.httpEndpoints = httpBound
        }
        for _ in threads { shared.started.wait() }
        if let failure = shared.control.withLock({ $0.startErrors.first }) {
            beginShutdown()
            waitUntilStopped()
            throw failure
        }
        return bound
    }

    /// Starts a graceful shutdown; returns at once and may be called from any thread, any number of times.
    /// Each reactor stops accepting (closing its listeners), stops reading, sends every in-flight reply when due,
    /// then half-closes each connection and closes it once the peer has closed too (or after 2 s).
    public func beginShutdown() {
        shared.requestShutdown()
    }

    /// Waits for every reactor thread to finish (after `beginShutdown`).
    public func waitUntilStopped() {
        let threads = lifecycle.withLock { l -> [pthread_t] in
            defer { l.threads = [] }
            return l.threads
        }
        for t in threads { pthread_join(t, nil) }
    }

    /// Replaces the tokens that new connections are checked against (reloading the token file); connections
    /// already admitted stay. False (and nothing changes) on a server started without tokens.
    @discardableResult
    public func replaceTokens(_ tokens: AuthTokens) -> Bool {
        shared.tokens.withLock { current in
            guard current != nil else { return false }
            current = tokens
            return true
        }
    }

    /// Counters per reactor and in total, readable from any thread while the server runs.
    public func stats() -> ServerStats { shared.stats }

    /// The HTTP endpoints as bound (real ports for port 0), in the order of `configuration.httpEndpoints`;
    /// empty before `start`.
    public var httpEndpoints: [Endpoint] { lifecycle.withLock { $0.httpEndpoints } }

    // MARK: - Listeners

    private func bindListeners() throws(ServerError) -> ([[ListenerSocket]], [Endpoint], [Endpoint]) {
        let n = baseConfiguration.reactors
        var perReactor = [[ListenerSocket]](repeating: [], count: n)
        var bound: [Endpoint] = []
        var httpBound: [Endpoint] = []
        func listen(_ endpoint: Endpoint, reusePort: Bool) throws(ServerError) -> Int32 {
            do {
                return try Socket.listen(endpoint, reusePort: reusePort)
            } catch {
                throw .listen(endpoint: endpoint.description, reason: error.description)
            }
        }
        // One TLS context for every tls:// listener (OpenSSL allows SSL_new on it from every reactor thread).
        var tlsContext: TLSContext?
        if let tls = baseConfiguration.tls {
            do {
                tlsContext = try TLSContext.server(
                    certificateFile: tls.certificateFile, keyFile: tls.keyFile, clientCAFile: tls.clientCAFile)
            } catch {
                throw .tls(error.description)
            }
        }
        /// One SO_REUSEPORT listener per reactor on `endpoint`; returns the address bound.
        func listenEverywhere(_ endpoint: Endpoint, port: UInt16, http: Bool, tls: TLSContext? = nil) throws(ServerError) -> Endpoint {
            if port != 0 && !baseConfiguration.sharePort {
                // SO_REUSEPORT would let us silently share a port with another server of the same
                // user: bind once without it to make sure the port is really free.
                Socket.close(fd: try listen(endpoint, reusePort: false))
            }
            let first = try listen(endpoint, reusePort: true)
            perReactor[0].append(ListenerSocket(fd: first, endpoint: endpoint, tls: tls, isHTTP: http))
            var actual: Endpoint
            do {
                actual = try Socket.localEndpoint(fd: first)
            } catch {
                throw .listen(endpoint: endpoint.description, reason: error.description)
            }
            // The kernel reports TCP; a TLS listener is reported as the tls:// endpoint it is.
            if case .tcp(let h, let p) = actual, endpoint.isTLS { actual = .tls(host: h, port: p) }
            // Port 0: the other reactors join the port the kernel picked for the first.
            let shared: Endpoint
            if case .tcp(_, let actualPort) = actual, port == 0 {
                shared = endpoint.withPort(actualPort)
            } else if case .tls(_, let actualPort) = actual, port == 0 {
                shared = endpoint.withPort(actualPort)
            } else {
                shared = endpoint
            }
            for k in 1..<n {
                perReactor[k].append(
                    ListenerSocket(fd: try listen(shared, reusePort: true), endpoint: shared, tls: tls, isHTTP: http))
            }
            return actual
        }
        do throws(ServerError) {
            for endpoint in baseConfiguration.endpoints {
                switch endpoint {
                case .tcp(_, let port):
                    bound.append(try listenEverywhere(endpoint, port: port, http: false))
                case .tls(_, let port):
                    bound.append(try listenEverywhere(endpoint, port: port, http: false, tls: tlsContext))
                case .unix:
                    perReactor[0].append(ListenerSocket(fd: try listen(endpoint, reusePort: false), endpoint: endpoint))
                    bound.append(endpoint)
                }
            }
            for endpoint in baseConfiguration.httpEndpoints {
                guard case .tcp(_, let port) = endpoint else { continue }  // validate() refuses others
                httpBound.append(try listenEverywhere(endpoint, port: port, http: true))
            }
        } catch {
            for list in perReactor {
                for l in list {
                    Socket.close(fd: l.fd)
                    if case .unix(let path) = l.endpoint { unlink(path) }
                }
            }
            throw error
        }
        return (perReactor, bound, httpBound)
    }

    // MARK: - Threads

    private func startThreads(listeners: [[ListenerSocket]]) throws(ServerError) -> [pthread_t] {
        // Reactor threads inherit this mask: SIGINT/SIGTERM/SIGHUP go to a thread that handles them (the control
        // loop of the executable), and a SIGPIPE raised by a write stays pending on the writing thread instead of
        // killing the process, so EPIPE is simply returned.
        var block = sigset_t()
        var previous = sigset_t()
        sigemptyset(&block)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { sigaddset(&block, s) }
        pthread_sigmask(SIG_BLOCK, &block, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }

        var threads: [pthread_t] = []
        let cpus = baseConfiguration.pinReactors.cpus(reactors: baseConfiguration.reactors, allowed: EventLoop.threadCPUs())
        for k in 0..<baseConfiguration.reactors {
            let reactor = Reactor(index: k, server: self, shared: shared, listeners: listeners[k], cpu: cpus[k], logger: logger)
            do {
                threads.append(try LoopThread.start { reactor.run() })
            } catch {
                for later in listeners[k...] { for l in later { Socket.close(fd: l.fd) } }
                // Stop the reactors already running before reporting the failure.
                for _ in threads { shared.started.wait() }
                shared.requestShutdown()
                for t in threads { pthread_join(t, nil) }
                throw .reactor(index: k, reason: "\(error)")
            }
        }
        return threads
    }
}
