import Glibc
import AsyncComCore
import AsyncComEventLoop

/// One connection to a server: connect, HELLO, then pipelined requests. It never blocks: output is appended to
/// `output` and written when the socket takes it, replies are framed in place in `input`.
///
/// Hot stored properties skip the runtime exclusivity checks, for the reason given on `Engine`.
///
/// One timer per connection serves every state: reconnect backoff (waiting), connect attempt deadline
/// (connecting), HELLO deadline (handshaking), and when ready the earliest of the oldest request's deadline, the
/// silence deadline (`SilenceWatch`: work pending and nothing heard for a request timeout) and, while a lagging
/// server would get more connections, the output's lag deadline (`OutputLag`).
/// Loop thread only.
///
/// Socket I/O goes through `Socket` calls in `connect`, `readReplies`, `flush` and `closeSocket` only: the seam
/// where another transport (TLS) slots in.
final class ClientConnection {
    enum State { case waiting, connecting, handshaking, ready, closed }

    /// `unowned(unsafe)`: the engine owns its connections and its servers and outlives them (it closes every
    /// connection in `teardown`, on the loop thread, before it goes). Plain `unowned` cost an atomic strong retain
    /// and a release on every access, 1.7% of the client's CPU in a 10M x 1 s job, mostly per reply (perf, 20:40 UTC).
    unowned(unsafe) let engine: Engine
    unowned(unsafe) let server: ServerState
    /// Index into `Engine.connections`.
    let index: Int
    @exclusivity(unchecked) private(set) var state = State.waiting
    private var fd: Int32 = -1
    /// Plain socket calls, or TLS for a `tls://` server (`ClientTransport.swift`).
    private var transport = ClientTransport()
    private var watcher: IOWatcher?
    var timer: EventTimer?
    let input = ByteBuffer(capacity: 64 << 10)
    let output = ByteBuffer(capacity: 64 << 10)
    /// Reused for every RES line: parsing allocates nothing in steady state.
    @exclusivity(unchecked) var results: [ItemResult] = []
    /// Requests sent here and not answered, timed out or lost.
    @exclusivity(unchecked) var inFlight = 0
    /// When the bytes of the latest read reached this host (monotonic ns; see `readReplies`).
    @exclusivity(unchecked) var arrivedNanos: UInt64 = 0
    @exclusivity(unchecked) var window: Int
    var maxItems = Int.max
    var maxLine = Int.max
    @exclusivity(unchecked) var timeouts = TimeoutQueue()
    private var backoff = Backoff()
    private var everReady = false
    /// Whether the server stalled on this connection (see `SilenceWatch`).
    @exclusivity(unchecked) var silence = SilenceWatch()
    /// Whether the server reads what this connection writes as fast as it is written.
    @exclusivity(unchecked) private var lag = OutputLag()
    /// On the engine's list of connections with output to flush.
    @exclusivity(unchecked) var isDirty = false

    init(engine: Engine, server: ServerState, index: Int) {
        self.engine = engine
        self.server = server
        self.index = index
        self.window = engine.depth.unlimited.window
    }

    /// Reply lines longer than this are a protocol error (a RES line needs about 21 bytes per item).
    var maxReplyLine: Int { max(1 << 20, 64 + 24 * min(server.batch, ClientConfiguration.maxBatch)) }

    func makeTimer(loop: EventLoop) {
        timer = EventTimer(loop: loop) { [unowned self] in self.timerFired() }
    }

    // MARK: connecting

    func connect() {
        guard state == .waiting else { return }
        let fd: Int32
        do {
            if server.resolved == nil { server.resolved = try Socket.resolve(server.endpoint) }
            fd = try Socket.connect(resolved: server.resolved!)
        } catch {
            attemptFailed(reason: ClientConnection.describe(error), strike: false)
            return
        }
        self.fd = fd
        state = .connecting
        watcher = IOWatcher(loop: engine.loop, fd: fd) { [unowned self] readable, writable in
            self.ioReady(readable: readable, writable: writable)
        }
        watcher?.setInterest(read: false, write: true)
        timer?.schedule(afterNanos: engine.requestTimeoutNanos)
    }

    private func connectCompleted() {
        let error = Socket.connectResult(fd: fd)
        guard error == 0 else {
            attemptFailed(reason: String(cString: strerror(error)), strike: false)
            return
        }
        Socket.setNoDelay(fd: fd)
        Socket.enableReceiveTimestamps(fd: fd)
        if engine.sendLowWater > 0, !server.endpoint.isUnix { Socket.setNotSentLowWater(fd: fd, bytes: engine.sendLowWater) }
        if case .tls(let host, _) = server.endpoint {
            guard let context = engine.tlsContext else {
                attemptFailed(reason: "TLS: no usable CA certificates", strike: false)
                return
            }
            do {
                try transport.startTLS(fd: fd, context: context, serverName: host)
            } catch {
                attemptFailed(reason: "TLS: \(error)", strike: false)
                return
            }
            continueTLS()
            return
        }
        startHello()
    }

    /// One step of the TLS handshake, as far as the socket allows (the connect timer still runs).
    private func continueTLS() {
        switch transport.handshake() {
        case .done:
            startHello()
        case .wantRead:
            watcher?.setInterest(read: true, write: false)
        case .wantWrite:
            watcher?.setInterest(read: false, write: true)
        case .failed(let reason):
            // A certificate that does not verify will not verify on the next attempt either: say why.
            engine.logger.warning("TLS handshake failed", metadata: ["server": "\(server.endpoint)", "error": "\(reason)"])
            attemptFailed(reason: "TLS handshake failed: \(reason)", strike: false)
        }
    }

    private func startHello() {
        state = .handshaking
        ClientProtocol.appendHello(token: engine.configuration.token, to: output)
        timer?.schedule(afterNanos: engine.requestTimeoutNanos)
        watcher?.setInterest(read: true, write: false)
        flush()
    }

    /// A connect attempt failed before any handshake: close, remember why, retry after the backoff.
    /// `strike`: it took a whole timeout (see `ServerHealth`).
    private func attemptFailed(reason: String, strike: Bool) {
        closeSocket()
        server.lastError = reason
        if server.quietConnectFailures {
            engine.logger.debug("connect failed", metadata: ["server": "\(server.endpoint)", "error": "\(reason)"])
        } else {
            // The first one is a warning: a server unreachable from the start is not --connect-timeout of silence.
            server.quietConnectFailures = true
            engine.logger.warning("cannot connect, retrying", metadata: [
                "server": "\(server.endpoint)", "error": "\(reason)",
                "for_up_to_s": "\(engine.configuration.connectTimeout)"])
        }
        scheduleReconnect()
        engine.attemptFailed(on: server, strike: strike)
    }

    private func scheduleReconnect() {
        state = .waiting
        timer?.schedule(afterNanos: backoff.next())
    }

    private func handshakeCompleted(fields: [String: String]) {
        let limits = ServerLimits(helloFields: fields)
        let (batch, window) = engine.depth.clamp(limits)
        self.window = window
        maxItems = limits.maxItems ?? Int.max
        maxLine = limits.maxLine ?? Int.max
        state = .ready
        timer?.cancel()
        silence.reset()
        backoff.reset()
        let isReconnect = everReady
        everReady = true
        engine.connectionReady(self, limits: limits, batch: batch, isReconnect: isReconnect)
    }

    // MARK: I/O

    private func ioReady(readable: Bool, writable: Bool) {
        switch state {
        case .connecting:
            if readable || writable {
                if transport.tls != nil { continueTLS() } else { connectCompleted() }
            }
        case .handshaking, .ready:
            if readable { readReplies() }
            if writable && (state == .handshaking || state == .ready) { flush() }
        case .waiting, .closed:
            break
        }
    }

    /// Reads and handles replies: at most `maxReads` reads of 64 KiB (so one busy connection cannot starve the
    /// others), or until the socket has nothing more.
    private func readReplies(maxReads: Int = 16) {
        var heard = false
        defer {
            if heard && state == .ready { silence.heard(now: engine.now(), pending: inFlight > 0 || !output.isEmpty) }
        }
        for _ in 0..<maxReads {
            let n: Int?
            do {
                let got = try transport.read(fd: fd, into: input, chunk: 64 << 10)
                n = got?.count
                // When the newest byte read reached this host (its kernel receive stamp, on the monotonic clock):
                // a reply's time in the client is measured from there to its handling.
                let mono = EventLoop.monotonicNanos()
                if let stamp = got?.stamp, stamp > 0 {
                    let age = EventLoop.realtimeNanos() &- stamp
                    arrivedNanos = age > 0 && UInt64(age) < mono ? mono &- UInt64(age) : mono
                } else {
                    arrivedNanos = mono
                }
            } catch {
                lost(reason: ClientConnection.describe(error))
                return
            }
            guard let n else { break }
            if n == 0 {
                lost(reason: "connection closed by the server")
                return
            }
            heard = true
            guard processLines() else { return }
        }
        engine.repliesProcessed(on: self)
    }

    /// Handles every complete line in `input`. Returns false when the connection went down meanwhile.
    private func processLines() -> Bool {
        while true {
            switch LineFramer.next(in: input.readableView, maxLine: maxReplyLine) {
            case .line(let line, let consumed):
                // Consuming first is safe: the bytes stay in place until the next read into `input`.
                input.consume(consumed)
                handle(line: line)
                guard state == .handshaking || state == .ready else { return false }
            case .incomplete:
                return true
            case .tooLong:
                engine.badReply(on: self, reason: "reply line longer than \(maxReplyLine) bytes", line: nil)
                lost(reason: "protocol error: reply line longer than \(maxReplyLine) bytes", helloFailure: true)
                return false
            }
        }
    }

    private func handle(line: UnsafeRawBufferPointer) {
        switch ClientProtocol.parse(line: line, results: &results) {
        case .results(let id):
            // Guaranteed, not copied: calling through the stored reference retained and released the engine
            // around every reply (perf: 6% of the client's samples in a 10M x 1 s job, in swift_release; client
            // CPU 1.430 -> 1.345 s, medians of 8 interleaved runs, load 3.2).
            Unmanaged.passUnretained(engine)._withUnsafeGuaranteedRef { $0.handleResults(id: id, on: self) }
        case .hello(let fields):
            if state == .handshaking { handshakeCompleted(fields: fields) }
        case .error(let id, let code, let message):
            if let id {
                engine.handleRequestError(id: id, code: code, message: message, on: self)
            } else if code == ProtocolErrorCode.busy.rawValue || code == ProtocolErrorCode.idleTimeout.rawValue
                        || code == ProtocolErrorCode.lineTooLong.rawValue || Self.refusesUs(code) {
                lost(reason: "server error \(code) \(message)", helloFailure: Self.refusesUs(code))
            } else {
                engine.badReply(on: self, reason: "ERR - \(code) \(message)", line: nil)
            }
        case .pong, .stats:
            break
        case .bye:
            lost(reason: "server said BYE")
        case .malformed(let reason):
            engine.badReply(on: self, reason: reason, line: line)
        }
    }

    /// Marks the connection for the engine's end-of-callback flush.
    @inline(__always) func markDirty() {
        if !isDirty {
            isDirty = true
            engine.dirty.append(self)
        }
    }

    /// Writes what the socket takes; watches for writability only while bytes remain.
    func flush() {
        guard fd >= 0, state == .handshaking || state == .ready else { return }
        if !output.isEmpty {
            do {
                _ = try transport.write(fd: fd, from: output)
            } catch {
                lost(reason: ClientConnection.describe(error))
                return
            }
        }
        let wantWrite = !output.isEmpty
        if state == .ready {
            if !wantWrite {
                lag.drained()
            } else if server.plan.mayCover {
                outputUnwritten(now: engine.now())
            }
        }
        if let watcher, watcher.wantsWrite != wantWrite || !watcher.wantsRead {
            watcher.setInterest(read: true, write: wantWrite)
        }
    }

    // MARK: failures and timers

    /// The connection is gone: requests in flight go back to the front of the server's queue, reconnect later.
    /// `helloFailure`: the server accepted but did not handshake properly (timeouts, garbage): counts toward
    /// declaring it down before `connectTimeout`.
    /// `stalled`: closed by the silence watch; its requests count as timed out, not lost.
    func lost(reason: String, helloFailure: Bool = false, stalled: Bool = false) {
        let wasReady = state == .ready
        let wasHandshaking = state == .handshaking
        guard wasReady || wasHandshaking || state == .connecting else { return }
        closeSocket()
        let lostRequests = timeouts.drainLive { engine.isInFlight($0, on: self) }
        inFlight = 0
        server.lastError = reason
        scheduleReconnect()
        engine.connectionLost(self, wasReady: wasReady, helloFailure: wasHandshaking && helloFailure, stalled: stalled,
                              reason: reason, requests: lostRequests)
    }

    private func timerFired() {
        switch state {
        case .waiting:
            connect()
        case .connecting:
            attemptFailed(reason: "connect timed out after \(engine.configuration.requestTimeout) s", strike: true)
        case .handshaking:
            lost(reason: "no reply to HELLO within \(engine.configuration.requestTimeout) s", helloFailure: true)
        case .ready:
            // Every reply already in the socket is read before any request's timer is judged: a loop that was
            // held up (a slow result consumer, a starved CPU) must not fail requests whose answers have arrived.
            // Bounded by what the server has sent: it answers only requests in flight here.
            readReplies(maxReads: .max)
            guard state == .ready else { return }
            let now = engine.now()
            if silence.isStalled(now: now, timeoutNanos: engine.requestTimeoutNanos) {
                engine.stalled(self)
                return
            }
            if !output.isEmpty && server.plan.mayCover { outputUnwritten(now: now) }
            engine.expireTimeouts(on: self, now: now)
        case .closed:
            break
        }
    }

    private func outputUnwritten(now: UInt64) {
        switch lag.unwritten(now: now) {
        case .waiting:
            break
        case .watching:
            // The timer looks at the lag's deadline: no write may come to look by then.
            armTimer(requestDeadline: timeouts.firstDeadline)
        case .lags:
            engine.serverLagged(on: self)
        }
    }

    /// Arms the timer (ready) for the earliest of the oldest live request deadline, the silence deadline and,
    /// while a lagging server would get more connections, the output lag's deadline.
    func armTimer(requestDeadline: UInt64?) {
        var next = requestDeadline
        if let d = silence.deadline(timeoutNanos: engine.requestTimeoutNanos) { next = min(next ?? d, d) }
        if server.plan.mayCover, let d = lag.deadline { next = min(next ?? d, d) }
        if let next, let timer { engine.arm(timer, at: next) }
    }

    /// Closes the connection for good (its reactor already has another connection: `ConnectionPlan`).
    func retire() {
        engine.logger.debug("connection retired", metadata: ["server": "\(server.endpoint)"])
        close()
    }

    private func closeSocket() {
        silence.reset()
        lag.reset()
        watcher?.cancel()
        watcher = nil
        transport.close()
        if fd >= 0 {
            Socket.close(fd: fd)
            fd = -1
        }
        input.clear()
        output.clear()
        input.shrinkIfEmpty(limit: 64 << 10)
        output.shrinkIfEmpty(limit: 64 << 10)
    }

    /// Errors that will not go away by reconnecting: the server wants another version, or a (right) token.
    static func refusesUs(_ code: String) -> Bool {
        code == ProtocolErrorCode.unsupportedVersion.rawValue || code == ProtocolErrorCode.authRequired.rawValue
            || code == ProtocolErrorCode.authFailed.rawValue || code == ProtocolErrorCode.authTimeout.rawValue
            || code == ProtocolErrorCode.tlsRequired.rawValue
    }

    /// The errno text of a socket error (`Connection refused`), which is what failure reasons quote.
    static func describe(_ error: any Error) -> String {
        if let e = error as? SystemError { return e.message ?? String(cString: strerror(e.errno)) }
        return "\(error)"
    }

    /// Final teardown (job over): no reconnect.
    func close() {
        closeSocket()
        timer?.cancel()
        timer = nil
        state = .closed
    }
}
