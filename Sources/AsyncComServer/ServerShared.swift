import AsyncComCore
import AsyncComEventLoop
import AsyncComTLS
import Dispatch
import Synchronization

/// A listening socket handed to a reactor.
struct ListenerSocket: Sendable {
    let fd: Int32
    let endpoint: Endpoint
    /// The context of a `tls://` listener's sessions.
    var tls: TLSContext? = nil
    /// Served by the reactor's evhttp (`--http-listen`) rather than protocol v1.
    var isHTTP = false
    var isTCP: Bool { if case .unix = endpoint { return false } else { return true } }
}

/// What the reactors of one server share: the read-only configuration, every reactor's published counters,
/// the connection count behind `maxConnections`, and the start/stop handshake with `Server`.
final class ServerShared: Sendable {
    struct Control {
        var notifiers: [Notifier?]
        var shutdownRequested = false
        var startErrors: [ServerError] = []
        var running = 0
        var onStopped: (@Sendable () -> Void)?
        /// Finished `POST /v1/reload`s waiting for their reactor to send the reply (see `finishedReload`).
        var finishedReloads: [[FinishedReload]]
    }

    /// The outcome of a `POST /v1/reload`, for the HTTP peer (slot and generation) that asked.
    struct FinishedReload: Sendable {
        let slot: UInt32
        let generation: UInt32
        let outcomes: [ReloadOutcome]
    }

    let configuration: ServerConfiguration
    /// Each reactor's counters (its reactor-scope keys), and the server's global ones.
    let counters: [StatCounters]
    let globalCounters = StatCounters()
    /// Open connections over all reactors (the only counter with several writers).
    let openConnections = Atomic<Int>(0)
    /// Connections still authenticating, over all reactors (capped by `maxUnauthenticated`).
    let openUnauthenticated = Atomic<Int>(0)
    /// The tokens HELLO is checked against; replaced whole by `Server.replaceTokens` (read once per HELLO).
    let tokens: Locked<AuthTokens?>
    let control: Locked<Control>
    /// When the server was created (CLOCK_MONOTONIC), for `asynccom_uptime_seconds`.
    let startNanos = EventLoop.monotonicNanos()
    /// Signalled once by each reactor when it is running or has failed to start.
    let started = DispatchSemaphore(value: 0)

    /// The device map the reactors answer from (`configuration.map` is only a placeholder: see `Server`).
    let maps: PublishedMap

    /// `configuration.map` must already be the placeholder; `map` is the map to start with.
    init(configuration: ServerConfiguration, map: DeviceMap) {
        self.configuration = configuration
        self.counters = (0..<configuration.reactors).map { _ in StatCounters() }
        self.control = Locked(Control(
            notifiers: Array(repeating: nil, count: configuration.reactors),
            finishedReloads: Array(repeating: [], count: configuration.reactors)))
        self.maps = PublishedMap(map, reactors: configuration.reactors)
        globalCounters.store(.mapGeneration, 1)
        self.tokens = Locked(configuration.authTokens)
    }

    var isShutdownRequested: Bool { control.withLock { $0.shutdownRequested } }

    var stats: ServerStats { ServerStats(reactors: counters.map { $0.snapshot }, global: globalCounters.snapshot) }

    /// Claims one connection under `maxConnections`; false when the server is full.
    func claimConnection() -> Bool { Self.claim(openConnections, limit: configuration.maxConnections) }

    func releaseConnection() {
        openConnections.subtract(1, ordering: .relaxed)
    }

    /// Claims one not-yet-authenticated connection under `maxUnauthenticated`; false when that many wait.
    func claimUnauthenticated() -> Bool { Self.claim(openUnauthenticated, limit: configuration.maxUnauthenticated) }

    func releaseUnauthenticated() {
        openUnauthenticated.subtract(1, ordering: .relaxed)
    }

    private static func claim(_ count: borrowing Atomic<Int>, limit: Int) -> Bool {
        var current = count.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = count.compareExchange(expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// A reactor is up: its notifier may now be used to stop it. Returns true when a shutdown was already
    /// requested (the reactor then stops at once).
    func reactorStarted(index: Int, notifier: Notifier) -> Bool {
        let stop = control.withLock { c -> Bool in
            c.notifiers[index] = notifier
            c.running += 1
            return c.shutdownRequested
        }
        started.signal()
        return stop
    }

    func reactorFailed(_ error: ServerError) {
        control.withLock { c in c.startErrors.append(error) }
        started.signal()
    }

    /// Called by a reactor before it drops its notifier, so no other thread can notify a closed eventfd.
    func reactorStopping(index: Int) {
        control.withLock { c in c.notifiers[index] = nil }
    }

    /// Called by a reactor thread as its last act; the last one runs `onStopped`.
    func reactorExited() {
        let callback = control.withLock { c -> (@Sendable () -> Void)? in
            c.running -= 1
            return c.running == 0 ? c.onStopped : nil
        }
        callback?()
    }

    func requestShutdown() {
        control.withLock { c in
            c.shutdownRequested = true
            // Notify under the lock: a reactor unregisters (under the same lock) before closing its eventfd.
            for case let n? in c.notifiers { n.notify() }
        }
    }

    /// Hands a finished reload to reactor `index` (from the reload queue) and wakes it to send the reply. Dropped
    /// when the reactor has stopped: its connections, and the request, are gone.
    func finishedReload(_ reload: FinishedReload, reactor index: Int) {
        control.withLock { c in
            guard let n = c.notifiers[index] else { return }
            c.finishedReloads[index].append(reload)
            n.notify()  // under the lock, as in requestShutdown
        }
    }

    /// The reloads finished for reactor `index` since it last asked (on that reactor, when notified).
    func takeFinishedReloads(reactor index: Int) -> [FinishedReload] {
        control.withLock { c in
            defer { c.finishedReloads[index].removeAll() }
            return c.finishedReloads[index]
        }
    }
}
