import AsyncComCore
import AsyncComEventLoop
import Logging

/// One HTTP connection of a reactor, known from its first request on: it counts against `--max-connections`
/// like a protocol v1 connection, and holds at most one request awaiting its due reply (libevent reads the
/// next request of a connection only after the reply).
final class HTTPPeer: Slotted {
    let connection: OpaquePointer
    let slot: UInt32
    let generation: UInt32
    /// The request whose reply is not due yet (a `/v1/commands` reply in `Reactor.pending`, or a reload).
    var pending: HTTPExchange?
    /// `pending` is a `POST /v1/reload` running on the reload queue.
    var awaitingReload = false
    var pendingCommands = 0
    var pendingBytes = 0
    /// Watches the socket while a reply is pending: libevent does not read it then, so without this a client
    /// that hangs up would hold its connection (and fd) until its reply came due.
    var hangupWatch: IOWatcher?

    init(connection: OpaquePointer, slot: UInt32, generation: UInt32) {
        self.connection = connection
        self.slot = slot
        self.generation = generation
    }
}

/// A reactor's HTTP side: its evhttp, its peers, and scratch buffers.
final class HTTPState {
    let listener: HTTPListener
    var table = SlotTable<HTTPPeer>()
    var peers: [OpaquePointer: HTTPPeer] = [:]
    /// `HTTPCommands.handle` writes the reply body here...
    let reply = ByteBuffer(capacity: 4096)
    /// ... using this for the intermediate `RES` line.
    let work = ByteBuffer(capacity: 4096)

    init(listener: HTTPListener) {
        self.listener = listener
    }
}

extension PendingRef {
    /// Set in `slot` for the reply of an HTTP request (the slot is then an `HTTPPeer`'s).
    static let httpFlag: UInt32 = 1 << 31
}

extension Reactor {
    // MARK: - Setting up

    /// Starts serving the reactor's HTTP listening sockets (it owns them from now on).
    func startHTTP(sockets: [ListenerSocket]) throws(SystemError) {
        guard !sockets.isEmpty else { return }
        let limits = HTTPListener.Limits(
            maxBodyBytes: config.httpMaxBody, maxHeaderBytes: config.httpMaxHeaders,
            timeoutSeconds: config.idleTimeout > 0 ? Int(config.idleTimeout.rounded(.up)) : 0)
        let listener: HTTPListener
        do {
            listener = try HTTPListener(
                loop: loop, limits: limits,
                onRequest: { [unowned self] exchange in self.handleHTTP(exchange) },
                onClose: { [unowned self] connection in self.httpConnectionClosed(connection) })
        } catch {
            for s in sockets { Socket.close(fd: s.fd) }
            throw error
        }
        http = HTTPState(listener: listener)
        for (k, s) in sockets.enumerated() {
            do {
                try listener.accept(fd: s.fd)
            } catch {
                for later in sockets[(k + 1)...] { Socket.close(fd: later.fd) }
                throw error
            }
        }
    }

    // MARK: - Requests

    /// Every HTTP request starts here: admission, routing, dispatch.
    func handleHTTP(_ exchange: HTTPExchange) {
        guard let http, let connection = exchange.connection else { return }
        counters.add(.httpRequests)
        let peer: HTTPPeer
        if let known = http.peers[connection] {
            peer = known
        } else {
            guard let admitted = admitHTTP(connection, http) else {
                counters.add(.rejected)
                respondError(exchange, status: 503, reason: "Service Unavailable",
                             .init(.busy, "too many connections (max \(config.maxConnections))"), close: true)
                return
            }
            peer = admitted
        }
        let route = exchange.withPath { HTTPRoute.resolve(method: exchange.method, path: $0) }
        if case .healthz = route {
            // Liveness stays open to load balancers and orchestrators without a token.
        } else if !authorizeHTTP(exchange) {
            return
        }
        switch route {
        case .commands:
            handleCommands(exchange, peer: peer, http: http)
        case .reload:
            startReload(exchange, peer: peer)
        case .metrics:
            serveMetrics(exchange, http: http)
        case .healthz:
            respondText(exchange, status: 200, reason: "OK", "{\"status\":\"ok\"}\n", contentType: "application/json")
        case .readyz:
            if stopping {
                respondText(exchange, status: 503, reason: "Service Unavailable", "{\"status\":\"draining\"}\n",
                            contentType: "application/json")
            } else {
                respondText(exchange, status: 200, reason: "OK", "{\"status\":\"ready\"}\n", contentType: "application/json")
            }
        case .notFound:
            respondError(exchange, status: 404, reason: "Not Found", .init(.notFound, "no such path"))
        case .methodNotAllowed(let allow):
            respondError(exchange, status: 405, reason: "Method Not Allowed",
                         .init(.methodNotAllowed, "allowed: \(allow)"), headers: [("Allow", allow)])
        }
    }

    /// On a server with tokens, every route but /healthz needs `Authorization: Bearer <token>`. A refusal is a
    /// 401 with `WWW-Authenticate: Bearer`, counted as on the line protocol, and closes the connection, so a
    /// guesser pays a connection per try. False when refused (the response is sent).
    private func authorizeHTTP(_ exchange: HTTPExchange) -> Bool {
        guard let tokens = shared.tokens.withLock({ $0 }) else { return true }
        let decision = exchange.withHeader("Authorization") { AuthGate.checkBearer($0, tokens: tokens) }
        switch decision {
        case .accepted:
            return true
        case .failed:
            counters.add(.authFailed)
            respondError(exchange, status: 401, reason: "Unauthorized", .init(.authFailed, "wrong token"), close: true,
                         headers: [("WWW-Authenticate", "Bearer error=\"invalid_token\"")])
        case .required, .unsupportedVersion:
            counters.add(.authRequired)
            respondError(exchange, status: 401, reason: "Unauthorized",
                         .init(.authRequired, "send Authorization: Bearer <token>"), close: true,
                         headers: [("WWW-Authenticate", "Bearer")])
        }
        return false
    }

    private func admitHTTP(_ connection: OpaquePointer, _ http: HTTPState) -> HTTPPeer? {
        guard shared.claimConnection() else { return nil }
        let (slot, generation) = http.table.reserve()
        let peer = HTTPPeer(connection: connection, slot: slot, generation: generation)
        http.table.install(peer)
        http.peers[connection] = peer
        http.listener.watchClose(of: connection)
        counters.update {
            counters.add(.connections)
            counters.add(.connectionsTotal)
        }
        return peer
    }

    private func handleCommands(_ exchange: HTTPExchange, peer: HTTPPeer, http: HTTPState) {
        let now = EventLoop.monotonicNanos()
        let format = Self.bodyFormat(exchange)
        let outcome = HTTPCommands.handle(
            body: exchange.body(), format: format, map: map, maxItems: config.maxItems,
            reply: http.reply, work: http.work)
        switch outcome {
        case .failed(let status, _):
            counters.add(.errors)
            exchange.respond(status: status, reason: status == 413 ? "Payload Too Large" : "Bad Request",
                             contentType: "application/json", body: http.reply.readableView, close: stopping)
        case .answered(let waitNanos, let commands, let unknown):
            // One update with the in-flight and pending counts below: STATS never sees half of it.
            counters.update {
                counters.add(.requests)
                counters.add(.commands, UInt64(commands))
                if unknown > 0 { counters.add(.unknown, UInt64(unknown)) }
                if waitNanos != 0 {
                    counters.add(.inflightRequests)
                    counters.add(.inflightCommands, UInt64(commands))
                    counters.add(.pendingReplies)
                    counters.add(.pendingBytes, UInt64(http.reply.readableBytes))
                }
            }
            if waitNanos == 0 {
                exchange.respond(status: 200, reason: "OK", contentType: "application/json",
                                 body: http.reply.readableView, close: stopping)
                return
            }
            pending.insert(line: http.reply.readableView, deadline: now &+ waitNanos, delay: waitNanos,
                           slot: peer.slot | PendingRef.httpFlag, generation: peer.generation, commands: commands)
            peer.pending = exchange
            peer.pendingCommands = commands
            peer.pendingBytes = http.reply.readableBytes
            watchHangup(peer, fd: exchange.fd)
            rearmReplyTimer()
        }
    }

    /// `POST /v1/reload`: `Server.reload()` loads whole files and waits for every reactor (this one too) to
    /// switch maps, so it runs on the server's reload queue, never here. The request waits like a delayed
    /// `/v1/commands` reply (hang-up watched); the queue hands the outcomes back through `ServerShared` and this
    /// reactor's notifier, and `answerFinishedReloads` replies. By then this reactor answers from the new map.
    private func startReload(_ exchange: HTTPExchange, peer: HTTPPeer) {
        guard let server else {
            respondError(exchange, status: 503, reason: "Service Unavailable", .init(.busy, "reload is not available"))
            return
        }
        peer.pending = exchange
        peer.awaitingReload = true
        watchHangup(peer, fd: exchange.fd)
        let (shared, index, slot, generation) = (shared, index, peer.slot, peer.generation)
        server.reloadInBackground { outcomes in
            shared.finishedReload(.init(slot: slot, generation: generation, outcomes: outcomes), reactor: index)
        }
    }

    /// Replies to every `POST /v1/reload` of this reactor that has finished (when notified): 200 when every
    /// input reloaded, 422 when any failed (the failed ones keep their previous contents). A request whose client
    /// hung up meanwhile is gone with its connection (the slot's generation no longer matches): nothing to send.
    func answerFinishedReloads() {
        let finished = shared.takeFinishedReloads(reactor: index)
        guard !finished.isEmpty, let http else { return }
        for done in finished {
            guard let peer = http.table.get(done.slot, done.generation), peer.awaitingReload,
                  let exchange = peer.pending else { continue }
            peer.pending = nil
            peer.awaitingReload = false
            peer.hangupWatch?.setInterest(read: false, write: false)
            http.reply.clear()
            let ok = ReloadOutcome.appendJSON(done.outcomes, to: http.reply)
            exchange.respond(status: ok ? 200 : 422, reason: ok ? "OK" : "Unprocessable Entity",
                             contentType: "application/json", body: http.reply.readableView, close: stopping)
        }
        stopIfDrained()
    }

    /// Text for `text/plain`, JSON for anything else: `application/json`, none, and also curl's default for
    /// `-d` (`application/x-www-form-urlencoded`), so `curl -d '{"items": [...]}'` just works.
    static func bodyFormat(_ exchange: HTTPExchange) -> CommandsBody.Format {
        exchange.withHeader("Content-Type") { value in
            guard let value else { return .json }
            return hasPrefix(value, "text/plain") ? .text : .json
        }
    }

    /// ASCII case-insensitive prefix test, then the media type must end (`;`, blank or end of value).
    private static func hasPrefix(_ value: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
        let n = prefix.utf8CodeUnitCount
        guard value.count >= n else { return false }
        let p = prefix.utf8Start
        for k in 0..<n where value[k] | 0x20 != p[k] | 0x20 { return false }
        return value.count == n || value[n] == UInt8(ascii: ";") || value[n] == 0x20 || value[n] == 0x09
    }

    private func serveMetrics(_ exchange: HTTPExchange, http: HTTPState) {
        let info = MetricsText.Info(
            version: config.serverVersion, mapEntries: map.count,
            uptimeSeconds: Double(EventLoop.monotonicNanos() &- shared.startNanos) / 1e9, ready: !stopping)
        http.reply.clear()
        MetricsText.render(shared.stats, info: info, to: http.reply)
        exchange.respond(status: 200, reason: "OK", contentType: MetricsText.contentType, body: http.reply.readableView,
                         close: stopping)
    }

    private func respondText(_ exchange: HTTPExchange, status: Int, reason: String, _ text: String, contentType: String) {
        var text = text
        text.withUTF8 {
            exchange.respond(status: status, reason: reason, contentType: contentType,
                             body: UnsafeRawBufferPointer($0), close: stopping)
        }
    }

    private func respondError(_ exchange: HTTPExchange, status: Int, reason: String, _ failure: CommandsBody.Failure,
                              close: Bool = false, headers: [(String, String)] = []) {
        counters.add(.errors)
        guard let http else { return }
        http.reply.clear()
        HTTPCommands.appendError(failure, to: http.reply)
        exchange.respond(status: status, reason: reason, contentType: "application/json", body: http.reply.readableView,
                         close: close || stopping, headers: headers)
    }

    // MARK: - Due replies, hang-ups, closes

    /// Sends the due reply of an HTTP request (from the reply timer). False when its connection is gone.
    func deliverHTTP(_ ref: PendingRef, body: UnsafeRawBufferPointer) -> Bool {
        guard let http, let peer = http.table.get(ref.slot & ~PendingRef.httpFlag, ref.generation),
              let exchange = peer.pending else { return false }
        peer.pending = nil
        peer.hangupWatch?.setInterest(read: false, write: false)
        counters.update {
            counters.subtract(.inflightRequests)
            counters.subtract(.inflightCommands, UInt64(peer.pendingCommands))
            counters.subtract(.pendingReplies)
            counters.subtract(.pendingBytes, UInt64(body.count))
        }
        peer.pendingCommands = 0
        peer.pendingBytes = 0
        exchange.respond(status: 200, reason: "OK", contentType: "application/json", body: body, close: stopping)
        return true
    }

    private func watchHangup(_ peer: HTTPPeer, fd: Int32) {
        guard fd >= 0 else { return }
        if peer.hangupWatch == nil {
            let connection = peer.connection
            peer.hangupWatch = IOWatcher(loop: loop, fd: fd) { [unowned self, unowned peer] readable, _ in
                guard readable else { return }
                switch Socket.peek(fd: fd) {
                case .closed:
                    // Gone: free the connection (and its request) now; the close callback settles the rest.
                    self.http?.listener.closeConnection(connection)
                case .data:
                    // A pipelined request: libevent reads it after the reply; nothing more to watch for.
                    peer.hangupWatch?.setInterest(read: false, write: false)
                case .nothing:
                    break
                }
            }
        }
        peer.hangupWatch?.setInterest(read: true, write: false)
    }

    /// libevent is freeing `connection` (peer gone, timeout, error, or after a `Connection: close` reply).
    func httpConnectionClosed(_ connection: OpaquePointer) {
        guard let http, let peer = http.peers.removeValue(forKey: connection) else { return }
        if let watch = peer.hangupWatch {
            retired.append(watch)  // it may be running its own callback right now
            watch.cancel()
            peer.hangupWatch = nil
        }
        if peer.awaitingReload {
            // The reload runs on; its outcome finds no peer and is dropped. libevent frees the request.
            peer.pending = nil
            peer.awaitingReload = false
        }
        let abandoned = peer.pending != nil
        if abandoned {
            // libevent frees the request with the connection.
            peer.pending = nil
            pending.abandon(replies: 1, bytes: peer.pendingBytes)
        }
        counters.update {
            // Its reply stays stored (pending_*) until due or reclaimed; it is no longer in flight.
            if abandoned {
                counters.subtract(.inflightRequests)
                counters.subtract(.inflightCommands, UInt64(peer.pendingCommands))
            }
            counters.subtract(.connections)
        }
        http.table.release(peer)
        shared.releaseConnection()
        if abandoned { reclaimStaleReplies() }
        stopIfDrained()
    }

    // MARK: - Shutdown

    /// Draining: no new connections; idle keep-alive connections close now, busy ones after their reply
    /// (sent with `Connection: close`).
    func stopHTTP() {
        guard let http else { return }
        http.listener.stopAccepting()
        for peer in http.table.all where peer.pending == nil {
            http.listener.closeConnection(peer.connection)
        }
    }
}
