import AsyncComCore
import AsyncComEventLoop
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// Runs a `Server` from a program's main thread: a small control event loop that owns the signal handling
/// (reactor threads block these signals, so they are delivered here) and that returns once every reactor has
/// drained and stopped.
///
/// The first watched signal starts the graceful shutdown; every signal is also reported to `onSignal` with the
/// number of signals received so far, so the caller can log it or give up at the second one.
///
/// A reload signal (SIGHUP) runs `Server.reload()` on the server's reload queue (never a reactor, never this
/// loop, one reload at a time, shared with `POST /v1/reload`); the server logs the outcome.
public final class ServerRunner {
    public let server: Server
    private let loop: EventLoop
    private let stopped: Notifier
    private var watchers: [SignalWatcher] = []
    private var signalsReceived = 0
    private let onSignal: (_ signal: Int32, _ count: Int) -> Void

    /// Installs the signal watchers at once, so a signal arriving while the server starts is not lost.
    public init(
        server: Server, signals: [Int32] = [SIGINT, SIGTERM], reloadSignals: [Int32] = [SIGHUP],
        onSignal: @escaping (_ signal: Int32, _ count: Int) -> Void
    ) throws(SystemError) {
        self.server = server
        self.onSignal = onSignal
        let loop = try EventLoop()
        self.loop = loop
        self.stopped = try Notifier(loop: loop) { loop.stop() }
        for s in signals {
            watchers.append(SignalWatcher(loop: loop, signal: s) { [unowned self] in self.received(s) })
        }
        for s in reloadSignals {
            watchers.append(SignalWatcher(loop: loop, signal: s) { [server] in
                server.reloadInBackground { _ in }
            })
        }
        // A blocked signal mask is inherited across exec: a parent that blocks SIGTERM in the spawning thread
        // (Foundation's Process, Swift concurrency's threads, some supervisors) would make us deaf to it.
        // Reactor threads still block these signals; they are created with their own mask in Server.start.
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals + reloadSignals { sigaddset(&set, s) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Binds and starts the server (see `Server.start`).
    public func start() throws(ServerError) -> [Endpoint] {
        let stopped = self.stopped
        return try server.start(onStopped: { stopped.notify() })
    }

    /// Runs the control loop until every reactor has stopped, then joins their threads.
    public func run() {
        loop.run()
        server.waitUntilStopped()
        for w in watchers { w.cancel() }
        stopped.cancel()
    }

    private func received(_ signal: Int32) {
        signalsReceived += 1
        onSignal(signal, signalsReceived)
        if signalsReceived == 1 { server.beginShutdown() }
    }
}
