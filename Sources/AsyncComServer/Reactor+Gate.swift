import AsyncComCore
import AsyncComEventLoop

/// What a connection must get through before it may send requests (only when the server requires it).
/// While a connection has a gate it holds a `maxUnauthenticated` claim instead of a `maxConnections` one, may
/// send one line of at most `preAuthMaxLine` bytes, and has `authTimeout` to authenticate.
final class ConnectionGate {
    enum Phase {
        /// Waiting for `HELLO 1 token=...` as the first line.
        case hello
        /// A wrong token: nothing more is read; `ERR - AUTH_FAILED` goes out when the timer fires.
        case rejecting
        /// Refused: the error line is being sent and the connection closes like any finishing one.
        case refused
    }

    var phase: Phase = .hello
    /// The auth timeout, then the failure delay (one timer per gated connection; gone once authenticated).
    let timer: Timer

    init(timer: Timer) {
        self.timer = timer
    }
}

/// Authentication of new connections: the first line must be `HELLO 1 token=...` (docs/PROTOCOL.md).
extension Reactor {
    /// The longest first line of a connection that has not authenticated, terminator included.
    static let preAuthMaxLine = 1024

    /// Puts a just-admitted connection behind its gate; it already holds an unauthenticated claim.
    func openGate(_ c: Connection) {
        let slot = c.slot
        let generation = c.generation
        let timer = Timer(loop: loop) { [unowned self] in self.gateTimerFired(slot: slot, generation: generation) }
        c.gate = ConnectionGate(timer: timer)
        timer.schedule(afterNanos: UInt64(config.authTimeout * 1e9))
        counters.add(.unauthenticated)
    }

    /// Releases the gate's claim (the connection is authenticated or closing).
    func dropGate(_ c: Connection) {
        guard let gate = c.gate else { return }
        gate.timer.cancel()
        c.gate = nil
        shared.releaseUnauthenticated()
        counters.subtract(.unauthenticated)
    }

    /// Readiness of a connection still waiting for its `HELLO 1 token=...`.
    func gateEvent(_ c: Connection, _ gate: ConnectionGate, readable: Bool) {
        guard readable, case .hello = gate.phase else { return }
        // Never buffer more than one maximal line: a peer cannot make an unauthenticated connection hold more.
        let room = Self.preAuthMaxLine + 1 - c.input.readableBytes
        let n: Int
        do {
            guard let got = try Socket.read(fd: c.fd, into: c.input, atMost: room) else { return }
            n = got
        } catch {
            close(c)
            return
        }
        if n == 0 {
            close(c)
            return
        }
        counters.add(.bytesIn, UInt64(n))
        let now = EventLoop.monotonicNanos()
        c.lastActivity = now
        switch LineFramer.next(in: c.input.readableView, maxLine: Self.preAuthMaxLine) {
        case .incomplete:
            return
        case .tooLong:
            reject(c, gate)
        case .line(let line, let consumed):
            guard let tokens = shared.tokens.withLock({ $0 }) else { return }
            switch AuthGate.check(line: line, tokens: tokens) {
            case .accepted(let entry):
                c.input.consume(consumed)
                admitAuthenticated(c, name: tokens.entries[entry].name, now: now)
            case .failed:
                reject(c, gate)
            case .required:
                counters.add(.authRequired)
                refuse(c, gate, code: .authRequired,
                       message: "authenticate first: HELLO 1 token=<token> must be the first line")
            case .unsupportedVersion:
                counters.add(.authRequired)
                refuse(c, gate, code: .unsupportedVersion, message: "this server speaks version 1")
            }
        }
    }

    /// A good token: the connection becomes an ordinary one (if a `maxConnections` slot is free).
    private func admitAuthenticated(_ c: Connection, name: String, now: UInt64) {
        guard let gate = c.gate else { return }
        guard shared.claimConnection() else {
            counters.add(.rejected)
            refuse(c, gate, code: .busy, message: "too many connections (max \(config.maxConnections))")
            return
        }
        dropGate(c)
        counters.add(.authOK)
        logger.debug("authenticated", metadata: ["token": "\(name)"])
        ServerProtocol.appendHello(helloInfo, to: c.output)
        // Requests pipelined behind the HELLO are answered now.
        if !c.input.isEmpty {
            processLines(c, in: c.input, now: now)
            rearmReplyTimer()
        }
        settle(c)
    }

    /// A wrong token (or an overlong first line): read nothing more, answer `AUTH_FAILED` only after the
    /// failure delay, then close. The answer itself is late, so a guesser gains nothing by hanging up early.
    private func reject(_ c: Connection, _ gate: ConnectionGate) {
        counters.add(.authFailed)
        gate.phase = .rejecting
        c.state = .finishing
        c.input.clear()
        c.watcher?.setInterest(read: false, write: false)
        gate.timer.schedule(afterNanos: UInt64(config.authFailureDelay * 1e9))
    }

    /// Sends `ERR - <code>` and closes after the flush (as any finishing connection).
    private func refuse(_ c: Connection, _ gate: ConnectionGate, code: ProtocolErrorCode, message: String) {
        gate.phase = .refused
        gate.timer.cancel()
        c.state = .finishing
        c.input.clear()
        counters.add(.errors)
        ServerProtocol.appendError(id: nil, code: code, message: message, to: c.output)
        settle(c)
    }

    private func gateTimerFired(slot: UInt32, generation: UInt32) {
        retired.removeAll()
        guard let c = table.get(slot, generation), let gate = c.gate else { return }
        switch gate.phase {
        case .hello:
            guard c.isOpen else { return }
            counters.add(.authTimeouts)
            refuse(c, gate, code: .authTimeout, message: "not authenticated within \(formatSeconds(config.authTimeout)) seconds")
        case .rejecting:
            refuse(c, gate, code: .authFailed, message: "wrong token")
        case .refused:
            break
        }
    }
}
