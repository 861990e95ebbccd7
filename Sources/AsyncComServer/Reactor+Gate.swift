import AsyncComCore
import AsyncComEventLoop
import AsyncComTLS

import Glibc

/// What a connection must get through before it may send requests (only when the server requires it).
/// While a connection has a gate it holds a `maxUnauthenticated` claim instead of a `maxConnections` one, may
/// send one line of at most `preAuthMaxLine` bytes, and has `authTimeout` to authenticate.
final class ConnectionGate {
    enum Phase {
        /// A `tls://` connection before its handshake has finished.
        case handshake
        /// Waiting for `HELLO 1 token=...` as the first line.
        case hello
        /// A wrong token: nothing more is read; `ERR - AUTH_FAILED` goes out when the timer fires.
        case rejecting
        /// Refused: the error line is being sent and the connection closes like any finishing one.
        case refused
    }

    var phase: Phase
    /// The auth timeout, then the failure delay (one timer per gated connection; gone once authenticated).
    let timer: EventTimer
    /// Whether the first byte of a TLS connection has been looked at (a plaintext client gets told).
    var sniffed = false

    init(phase: Phase, timer: EventTimer) {
        self.phase = phase
        self.timer = timer
    }

    /// Handshaking or waiting for the HELLO: the gate handles the connection's events itself.
    var isWaiting: Bool {
        switch phase {
        case .handshake, .hello: return true
        case .rejecting, .refused: return false
        }
    }
}

/// Admission of new connections on servers that check who connects: the TLS handshake of a `tls://` listener
/// (never blocking: each step goes as far as the socket allows), then, with tokens, the first line
/// `HELLO 1 token=...` (docs/PROTOCOL.md).
extension Reactor {
    /// The longest first line of a connection that has not authenticated, terminator included.
    static let preAuthMaxLine = 1024

    /// Puts a just-admitted connection behind its gate; it already holds an unauthenticated claim. False when
    /// the connection was closed instead (no TLS session could be made).
    func openGate(_ c: ServerConnection, tls: TLSContext?) -> Bool {
        let slot = c.slot
        let generation = c.generation
        let timer = EventTimer(loop: loop) { [unowned self] in self.gateTimerFired(slot: slot, generation: generation) }
        c.gate = ConnectionGate(phase: tls == nil ? .hello : .handshake, timer: timer)
        counters.add(.unauthenticated)
        if let tls {
            do {
                c.tls = try tls.makeSession(fd: c.fd)
            } catch {
                logger.warning("cannot start a TLS session", metadata: ["error": "\(error)"])
                close(c)
                return false
            }
        }
        timer.schedule(afterNanos: config.authTimeout.secondsAsNanos)
        return true
    }

    /// Releases the gate's claim (the connection is authenticated or closing).
    func dropGate(_ c: ServerConnection) {
        guard let gate = c.gate else { return }
        gate.timer.cancel()
        c.gate = nil
        shared.releaseUnauthenticated()
        counters.subtract(.unauthenticated)
    }

    /// Readiness of a connection still handshaking or waiting for its `HELLO 1 token=...`.
    func gateEvent(_ c: ServerConnection, _ gate: ConnectionGate, readable: Bool, writable: Bool) {
        switch gate.phase {
        case .handshake:
            handshake(c, gate)
        case .hello:
            if readable { readHello(c, gate) }
        case .rejecting, .refused:
            break
        }
    }

    /// One step of the TLS handshake; never waits for the peer.
    private func handshake(_ c: ServerConnection, _ gate: ConnectionGate) {
        guard let tls = c.tls else { return }
        if !gate.sniffed {
            // A TLS client speaks first with a handshake record (0x16). Anything else is a plaintext client on
            // the wrong port: tell it in words it can read, instead of a TLS alert it cannot.
            var first: UInt8 = 0
            let n = recv(c.fd, &first, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return }
            guard n == 1 else {
                close(c)
                return
            }
            gate.sniffed = true
            if first != 0x16 {
                counters.add(.tlsFailed)
                let line = "ERR - TLS_REQUIRED this port speaks TLS: connect with tls://\n"
                _ = line.utf8CString.withUnsafeBytes { send(c.fd, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                close(c)
                return
            }
        }
        switch tls.handshake() {
        case .wantRead:
            c.watcher?.setInterest(read: true, write: false)
        case .wantWrite:
            c.watcher?.setInterest(read: false, write: true)
        case .failed(let reason):
            counters.add(.tlsFailed)
            logger.debug("TLS handshake failed", metadata: ["error": "\(reason)"])
            close(c)
        case .done:
            counters.add(.tlsHandshakes)
            c.lastActivity = EventLoop.monotonicNanos()
            if config.requiresAuthentication {
                gate.phase = .hello
                c.watcher?.setInterest(read: true, write: false)
                // The HELLO may have come with the handshake's last flight.
                readHello(c, gate)
            } else {
                admitAuthenticated(c, name: nil, now: c.lastActivity)
            }
        }
    }

    /// Reads the first line (at most `preAuthMaxLine` bytes are ever buffered) and decides on it.
    private func readHello(_ c: ServerConnection, _ gate: ConnectionGate) {
        // Never buffer more than one maximal line: a peer cannot make an unauthenticated connection hold more.
        let room = Self.preAuthMaxLine + 1 - c.input.readableBytes
        let n: Int
        do {
            guard let got = try c.receive(into: c.input, atMost: room) else { return }
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

    /// A good token or a finished TLS handshake: the connection becomes an ordinary one (if a `maxConnections`
    /// slot is free). `name` is the token's; nil when TLS alone admitted it (no HELLO reply then).
    private func admitAuthenticated(_ c: ServerConnection, name: String?, now: UInt64) {
        guard let gate = c.gate else { return }
        guard shared.claimConnection() else {
            counters.add(.rejected)
            refuse(c, gate, code: .busy, message: "too many connections (max \(config.maxConnections))")
            return
        }
        dropGate(c)
        if let name {
            counters.add(.authOK)
            logger.debug("authenticated", metadata: ["token": "\(name)"])
            ServerProtocol.appendHello(helloInfo, to: c.output)
        }
        // Requests pipelined behind the HELLO are answered now.
        if !c.input.isEmpty {
            processLines(c, in: c.input, now: now)
            rearmReplyTimer()
        }
        settle(c)
    }

    /// A wrong token (or an overlong first line): read nothing more, answer `AUTH_FAILED` only after the
    /// failure delay, then close. The answer itself is late, so a guesser gains nothing by hanging up early.
    private func reject(_ c: ServerConnection, _ gate: ConnectionGate) {
        counters.add(.authFailed)
        gate.phase = .rejecting
        c.state = .finishing
        c.input.clear()
        c.watcher?.setInterest(read: false, write: false)
        gate.timer.schedule(afterNanos: config.authFailureDelay.secondsAsNanos)
    }

    /// Sends `ERR - <code>` and closes after the flush (as any finishing connection).
    private func refuse(_ c: ServerConnection, _ gate: ConnectionGate, code: ProtocolErrorCode, message: String) {
        gate.phase = .refused
        gate.timer.cancel()
        c.state = .finishing
        c.input.clear()
        counters.add(.errors)
        ServerProtocol.appendError(id: nil, code: code, message: message, to: c.output)
        settle(c)
    }

    private func gateTimerFired(slot: UInt32, generation: UInt32) {
        guard let c = table.get(slot, generation), let gate = c.gate else { return }
        switch gate.phase {
        case .handshake:
            // No plaintext error on a TLS port, and no TLS to send one over yet: just close.
            counters.add(.tlsTimeouts)
            close(c)
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
