import AsyncComCore
import AsyncComEventLoop
import Logging

import Glibc

/// One event loop on one thread, with its own listeners, connections, pending replies and timers.
///
/// Everything here runs on the reactor's thread; other threads reach it only through `notifier` (shutdown) and
/// read its published `counters`. Latency is modelled by one timer for all pending replies, armed at the
/// earliest deadline of a `DeadlineQueue`, so the number of timer events never grows with the load.
final class Reactor {
    static let readChunk = 64 * 1024
    /// Bytes read from one connection per callback before yielding to the others (fairness): one read chunk.
    /// While a reactor reads one busy connection, its other connections' requests wait unstamped in their clients'
    /// send queues, which is lateness. 10M x 1 s with the client's defaults of then (8 connections, 4 per reactor; two
    /// rounds of 6 interleaved runs, load 14-15): lateness p99 14.5 / 16.6 ms at 256 KiB, 12.2 / 12.5 at 64 KiB,
    /// 10.9 / 11.7 at 32 KiB; wall 3.45 / 3.39, 3.46 / 3.51, 3.58 / 3.51 s. 32 KiB cost more wall for little more.
    static let readBudget = 64 * 1024
    /// Lines handled between two looks at the clock for replies that fell due meanwhile.
    static let repliesCheckLines = 32
    /// Maps whose tables are at least this big get the next short request's buckets prefetched while the current
    /// one is answered (`processLines`): their probes miss the cache, a small map's do not, and then looking
    /// ahead is a second parse for nothing. Server CPU for 1M one-item requests, zero waits, medians of 10
    /// interleaved runs (load 1.4-2.4): 1M-entry map (20 MB table) 378 -> 344, 430 -> 403, 359 -> 321 ms; 131k-entry
    /// map (2.6 MB table, 2M requests) 558 -> 582, 614 -> 660 ms without this limit; with it (8 MiB) 374 -> 356 ms
    /// and 565 -> 566 ms.
    static let lookaheadMapBytes = 8 << 20
    /// Connections accepted per listener callback before yielding.
    static let acceptBatch = 64
    /// How long a closing connection may keep sending us bytes after we shut down our side.
    static let lingerNanos: UInt64 = 2_000_000_000
    /// Pause after accept fails for lack of descriptors or memory, instead of spinning on a ready listener.
    static let acceptPauseNanos: UInt64 = 100_000_000
    /// Idle buffers keep at most this much capacity.
    static let bufferKeep = 16 * 1024
    /// The CPU slice each reactor thread asks the kernel for (the least Linux takes). With the client on the same
    /// 2 cores, three busy threads share two CPUs: at the kernel's default slice a reactor waited milliseconds for
    /// its turn while its peer's requests queued and its due replies waited. Measured (asynccom-client defaults,
    /// 8 runs each, interleaved, load 8-9): 1M x 1 s with a 1M-entry map, lateness p99 7.9 -> 4.5 ms; 10M x 1 s
    /// (5 runs) p99 19.9 -> 14.3 ms, wall 3.68 -> 3.58 s; zero-wait throughput unchanged (0.46 / 0.38 s).
    static let schedulerSliceNanos: UInt64 = 100_000

    let index: Int
    /// The CPU this reactor's thread is bound to (`ReactorPinning`); nil: wherever the scheduler puts it.
    let cpu: Int?
    let shared: ServerShared
    /// For `POST /v1/reload` (weak: the server owns the reactors' lifetime, not the other way round).
    weak var server: Server?
    let config: ServerConfiguration
    let counters: StatCounters
    var logger: Logger

    private var listenerSockets: [ListenerSocket]
    /// HTTP listening sockets, handed to the reactor's evhttp in `run` (`--http-listen`).
    private var httpSockets: [ListenerSocket]
    /// The HTTP side, when the server has HTTP endpoints.
    var http: HTTPState?
    private(set) var loop: EventLoop!
    private var listenerWatchers: [IOWatcher] = []
    private var replyTimer: EventTimer!
    /// The deadline `replyTimer` is armed for; 0 when it is not armed.
    private var armedDeadline: UInt64 = 0
    /// When the reply timer last fired, and the least gap to its next firing (`replyCoalescing`).
    private var lastReplyFire: UInt64 = 0
    private let coalescingNanos: UInt64
    private var sweepTimer: EventTimer!
    private var sweepNanos: UInt64
    private var acceptTimer: EventTimer!
    private var notifier: Notifier!
    private var acceptPaused = false
    private var lastAcceptErrorLog: UInt64 = 0

    var table = ConnectionTable()
    let pending = PendingReplies()
    /// Every read lands here first; only an incomplete line's leftovers are copied to the connection.
    let readBuffer = ByteBuffer(capacity: Reactor.readChunk)
    /// `ServerProtocol.handle` writes each reply here first.
    let scratch = ByteBuffer(capacity: 4096)
    /// Connections that got replies in the current timer callback, flushed once each at its end.
    var flushQueue: [ServerConnection] = []
    /// True while `fireDueReplies` runs.
    var firingReplies = false
    /// Closed connections (and watchers) kept alive until the callback that closed them has returned: the
    /// loop's `afterCallback` empties it.
    var retired: [AnyObject] = []
    var stopping = false
    let idleNanos: UInt64
    var helloInfo: HelloInfo
    /// The device map this reactor answers from, and its generation: switched to the published one between
    /// two events (`adoptPublishedMap`), never while a request is being answered.
    var map: DeviceMap
    var mapGeneration: UInt64
    private let busyLine: [UInt8]
    private let unauthenticatedBusyLine: [UInt8]

    init(index: Int, server: Server, shared: ServerShared, listeners: [ListenerSocket], cpu: Int?, logger: Logger) {
        self.index = index
        self.cpu = cpu
        self.server = server
        self.shared = shared
        self.config = shared.configuration
        self.counters = shared.counters[index]
        self.listenerSockets = listeners.filter { !$0.isHTTP }
        self.httpSockets = listeners.filter(\.isHTTP)
        var logger = logger
        logger[metadataKey: "reactor"] = "\(index)"
        self.logger = logger
        self.idleNanos = config.idleTimeout.secondsAsNanos
        self.coalescingNanos = config.replyCoalescing.secondsAsNanos
        // Sweep often enough that an idle connection goes within a quarter of the timeout of its time.
        self.sweepNanos = idleNanos > 0 ? min(1_000_000_000, max(50_000_000, idleNanos / 4)) : 1_000_000_000
        (self.map, self.mapGeneration) = shared.maps.current()
        self.helloInfo = HelloInfo(
            serverVersion: config.serverVersion, maxItems: config.maxItems, maxLine: config.maxLine,
            maxInflight: config.maxInflightCommands, reactors: config.reactors, reactor: index,
            mapGeneration: mapGeneration)
        let busy = ByteBuffer(capacity: 128)
        ServerProtocol.appendError(
            id: nil, code: .busy, message: "too many connections (max \(config.maxConnections))", to: busy)
        self.busyLine = Array(busy.readableView)
        busy.clear()
        ServerProtocol.appendError(
            id: nil, code: .busy,
            message: "too many connections waiting to authenticate (max \(config.maxUnauthenticated))", to: busy)
        self.unauthenticatedBusyLine = Array(busy.readableView)
    }

    // MARK: - Thread body

    /// Runs on the reactor's own thread until shutdown has drained every connection.
    func run() {
        defer { shared.reactorExited() }
        if let error = EventLoop.requestThreadSlice(nanos: Self.schedulerSliceNanos) {
            logger.debug("no short scheduler slice for the reactor thread", metadata: ["error": "\(error)"])
        }
        if let cpu {
            if let error = EventLoop.pinThread(toCPU: cpu) {
                logger.warning("reactor thread not bound to its CPU", metadata: ["cpu": "\(cpu)", "error": "\(error)"])
            } else {
                logger.debug("reactor thread bound to its CPU", metadata: ["cpu": "\(cpu)"])
            }
        }
        do {
            loop = try EventLoop()
            // What every callback must do at its end, in one place: free what it closed (it may be running
            // inside a watcher it retired).
            loop.afterCallback = { [unowned self] in if !self.retired.isEmpty { self.retired.removeAll() } }
            notifier = try Notifier(loop: loop) { [unowned self] in self.onNotified() }
            try startHTTP(sockets: httpSockets)
            httpSockets = []
        } catch {
            for l in listenerSockets + httpSockets { Socket.close(fd: l.fd) }
            shared.reactorFailed(.reactor(index: index, reason: error.description))
            return
        }
        // Urgent: due replies are written before more input is read (inflight p99 lateness: see ARCHITECTURE.md).
        replyTimer = EventTimer(loop: loop, urgent: true) { [unowned self] in self.onReplyTimer() }
        sweepTimer = EventTimer(loop: loop) { [unowned self] in self.onSweep() }
        acceptTimer = EventTimer(loop: loop) { [unowned self] in self.resumeAccepting() }
        for (i, l) in listenerSockets.enumerated() {
            let w = IOWatcher(loop: loop, fd: l.fd) { [unowned self] readable, _ in
                if readable { self.acceptConnections(listener: i) }
            }
            w.setInterest(read: true, write: false)
            listenerWatchers.append(w)
        }
        sweepTimer.schedule(afterNanos: sweepNanos)
        if shared.reactorStarted(index: index, notifier: notifier) { beginStopping() }
        adoptPublishedMap()  // a reload may have been published before the notifier was registered
        logger.debug("reactor running", metadata: ["listeners": "\(listenerSockets.count)"])

        loop.run()

        // Normally every connection is gone by now; close any left if the loop ended another way.
        for c in table.all { close(c) }
        shared.reactorStopping(index: index)
        notifier.cancel()
        replyTimer.cancel()
        sweepTimer.cancel()
        acceptTimer.cancel()
        closeListeners()
        http?.listener.close()  // connections that never sent a request, if any
        http = nil
        retired.removeAll()
        flushQueue.removeAll()
        logger.debug("reactor stopped")
    }

    /// Another thread woke us: a new map was published, a `POST /v1/reload` finished, or the server is shutting
    /// down.
    private func onNotified() {
        adoptPublishedMap()
        answerFinishedReloads()
        if shared.isShutdownRequested { beginStopping() }
    }

    /// Switches to the published map if it is newer. Called between events only: at the start of a connection
    /// callback and when notified, so every request is answered from one map.
    @inline(__always) func adoptPublishedMap() {
        guard shared.maps.generation.load(ordering: .acquiring) != mapGeneration else { return }
        let (latest, generation) = shared.maps.current()
        map = latest  // drops this reactor's reference to the old map (the reloader frees it)
        mapGeneration = generation
        helloInfo.mapGeneration = generation
        shared.maps.adopted(reactor: index, generation: generation)
    }

    // MARK: - Accepting

    private func acceptConnections(listener i: Int) {
        guard !stopping, !acceptPaused else { return }
        let listener = listenerSockets[i]
        for _ in 0..<Self.acceptBatch {
            let fd: Int32
            do {
                guard let accepted = try Socket.accept(fd: listener.fd) else { return }
                fd = accepted
            } catch {
                acceptFailed(error)
                return
            }
            admit(fd: fd, listener: listener)
        }
    }

    private func acceptFailed(_ error: SystemError) {
        switch error.errno {
        case ECONNABORTED, EINTR, EPROTO, EPERM:
            return  // this one connection is gone; the listener stays usable
        default:
            // EMFILE/ENFILE/ENOBUFS/ENOMEM and anything unexpected: the listener stays readable, so retrying now
            // would spin. Pause, and say so at most once a second.
            let now = EventLoop.monotonicNanos()
            if now &- lastAcceptErrorLog >= 1_000_000_000 || lastAcceptErrorLog == 0 {
                lastAcceptErrorLog = now
                logger.warning("accept failed; pausing accepts for 100 ms", metadata: ["error": "\(error)"])
            }
            acceptPaused = true
            for w in listenerWatchers { w.setInterest(read: false, write: false) }
            acceptTimer.schedule(afterNanos: Self.acceptPauseNanos)
        }
    }

    private func resumeAccepting() {
        acceptPaused = false
        guard !stopping else { return }
        for w in listenerWatchers { w.setInterest(read: true, write: false) }
    }

    private func admit(fd: Int32, listener: ListenerSocket) {
        // A connection that must authenticate first (a token, a TLS handshake) takes an unauthenticated slot,
        // not a real client's.
        let gated = config.requiresAuthentication || listener.tls != nil
        guard gated ? shared.claimUnauthenticated() : shared.claimConnection() else {
            // Counted before the peer can see BUSY, so a STATS sent after it always includes this rejection.
            counters.add(gated ? .authRejected : .rejected)
            // Best effort: the socket is non-blocking and fresh, so this fits in its send buffer or is dropped.
            // (Not on a TLS port: the peer expects a handshake, and a plaintext line would only confuse it.)
            let line = gated ? unauthenticatedBusyLine : busyLine
            if listener.tls == nil {
                _ = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            }
            Socket.close(fd: fd)
            return
        }
        if listener.isTCP {
            Socket.setNoDelay(fd: fd)
            Socket.enableReceiveTimestamps(fd: fd)
            if config.receiveBuffer > 0 { Socket.setReceiveBuffer(fd: fd, bytes: config.receiveBuffer) }
        }
        let (slot, generation) = table.reserve()
        let c = ServerConnection(fd: fd, slot: slot, generation: generation, now: EventLoop.monotonicNanos())
        let watcher = IOWatcher(loop: loop, fd: fd) { [unowned self] readable, writable in
            self.connectionEvent(slot: slot, generation: generation, readable: readable, writable: writable)
        }
        c.watcher = watcher
        table.install(c)
        if gated && !openGate(c, tls: listener.tls) { return }
        watcher.setInterest(read: true, write: false)
        counters.update {
            counters.add(.connections)
            counters.add(.connectionsTotal)
        }
    }

    private func closeListeners() {
        for w in listenerWatchers { w.cancel() }
        listenerWatchers.removeAll()
        guard !listenerSockets.isEmpty else { return }
        for l in listenerSockets {
            Socket.close(fd: l.fd)
            if case .unix(let path) = l.endpoint { unlink(path) }
        }
        listenerSockets.removeAll()
    }

    // MARK: - Pending replies

    /// When the reply timer should fire next (nil: nothing pending): the earliest deadline, but never sooner than
    /// `replyCoalescing` after the last firing. Under a stream of distinct deadlines this bounds the timer's rate
    /// and batches the replies into fewer writes, for at most that much lateness.
    private var nextReplyFire: UInt64? {
        guard let due = pending.nextDeadline else { return nil }
        return max(due, lastReplyFire &+ coalescingNanos)
    }

    /// Whether replies are due by `now`, counting requests inserted since the timer was last armed (it is armed
    /// only after a read has been handled): reading stops early then, or fires them mid-read.
    func repliesDue(now: UInt64) -> Bool { nextReplyFire.map { $0 <= now } ?? false }

    /// Re-arms the reply timer when the earliest deadline changed.
    func rearmReplyTimer() {
        guard let next = nextReplyFire else { return }
        if next != armedDeadline {
            armedDeadline = next
            replyTimer.schedule(atMonotonicNanos: next)
        }
    }

    private func onReplyTimer() { fireDueReplies(now: EventLoop.monotonicNanos(), reading: nil) }

    /// Sends every reply due by `now`: one write per connection. `reading`: the connection whose input is being
    /// handled right now (replies fired in the middle of a read); it is only written to here, and settled when
    /// its callback ends.
    func fireDueReplies(now: UInt64, reading: ServerConnection?) {
        // Not again from inside: settling a connection can handle its held-back lines, which look at the clock.
        firingReplies = true
        defer { firingReplies = false }
        armedDeadline = 0
        lastReplyFire = now
        pending.popDue(now: now) { ref, deadline, line in
            if ref.slot & PendingRef.httpFlag != 0 {
                guard deliverHTTP(ref, body: line) else {
                    dropStaleReply(bytes: line.count)
                    return false
                }
                counters.recordLateness(now &- deadline)
                return true
            }
            // A closed connection's replies are stale: its slot's generation has moved on.
            guard let c = table.get(ref.slot, ref.generation) else {
                dropStaleReply(bytes: line.count)
                return false
            }
            c.output.append(line)
            c.inflightRequests -= 1
            c.inflightCommands -= Int(ref.commands)
            c.pendingBytes -= line.count
            counters.update {
                counters.subtract(.inflightRequests)
                counters.subtract(.inflightCommands, UInt64(ref.commands))
                counters.subtract(.pendingReplies)
                counters.subtract(.pendingBytes, UInt64(line.count))
                counters.recordLateness(now &- deadline)
            }
            c.lastActivity = now
            c.firedReplies += 1
            if !c.queuedForFlush {
                c.queuedForFlush = true
                flushQueue.append(c)
            }
            return true
        }
        // One write per connection per fire, however many of its replies fell due.
        for c in flushQueue {
            c.queuedForFlush = false
            if c === reading { _ = flush(c) } else { settle(c) }
            counters.recordWriteDelay(EventLoop.monotonicNanos() &- now, replies: c.firedReplies)
            c.firedReplies = 0
        }
        flushQueue.removeAll(keepingCapacity: flushQueue.capacity <= 4096)
        reclaimStaleReplies()
        rearmReplyTimer()
    }

    /// A closed connection's reply fell due and is dropped: no longer stored.
    private func dropStaleReply(bytes: Int) {
        counters.update {
            counters.subtract(.pendingReplies)
            counters.subtract(.pendingBytes, UInt64(bytes))
        }
    }

    /// Drops the stale replies of closed connections once they hold more than half of the pending memory.
    func reclaimStaleReplies() {
        guard pending.shouldReclaim else { return }
        let before = pending.count
        pending.reclaim { ref in
            ref.slot & PendingRef.httpFlag != 0
                ? http?.table.get(ref.slot & ~PendingRef.httpFlag, ref.generation)?.pending != nil
                : table.get(ref.slot, ref.generation) != nil
        }
        logger.debug("reclaimed stale replies", metadata: ["replies": "\(before - pending.count)", "kept": "\(pending.count)"])
        counters.update {
            counters.store(.pendingReplies, UInt64(pending.count))
            counters.store(.pendingBytes, UInt64(pending.storedBytes))
        }
    }

    // MARK: - Idle sweep and lingering closes

    private func onSweep() {
        let now = EventLoop.monotonicNanos()
        var i = 0
        while i < table.slots.count {
            defer { i += 1 }
            guard let c = table.slots[i] else { continue }
            if case .lingering(let deadline) = c.state {
                if now >= deadline { close(c) }
                continue
            }
            if idleNanos > 0 && writeStalled(c, now: now) {
                logger.debug("closing a connection whose peer stopped reading",
                             metadata: ["unsent": "\(c.output.readableBytes)"])
                close(c)
                continue
            }
            switch c.state {
            case .lingering, .finishing, .closed:
                break
            case .open:
                if idleNanos > 0, c.inflightRequests == 0, c.output.isEmpty, now &- c.lastActivity >= idleNanos {
                    ServerProtocol.appendError(
                        id: nil, code: .idleTimeout,
                        message: "no request for \(formatSeconds(config.idleTimeout)) seconds", to: c.output)
                    c.state = .finishing
                    settle(c)
                }
            }
        }
        if !(stopping && table.count == 0) { sweepTimer.schedule(afterNanos: sweepNanos) }
    }

    /// Whether `c` has had unsent output and written none of it for the idle timeout (checked at each sweep).
    private func writeStalled(_ c: ServerConnection, now: UInt64) -> Bool {
        if c.output.isEmpty {
            c.stallSince = 0
            return false
        }
        if c.stallSince == 0 || c.bytesWritten != c.stallMark {
            c.stallSince = now
            c.stallMark = c.bytesWritten
            return false
        }
        return now &- c.stallSince >= idleNanos
    }

    // MARK: - Shutdown

    /// Stop accepting; let every connection finish its in-flight requests, flush, and close.
    private func beginStopping() {
        guard !stopping else { return }
        stopping = true
        logger.debug("reactor draining", metadata: ["connections": "\(table.count)", "pending": "\(pending.count)"])
        acceptTimer.cancel()
        closeListeners()
        stopHTTP()
        // Lingering connections must close within their 2 s; sweep more often while draining.
        sweepNanos = min(sweepNanos, 100_000_000)
        sweepTimer.schedule(afterNanos: sweepNanos)
        for c in table.all where c.isOpen {
            c.state = .finishing
            settle(c)
        }
        stopIfDrained()
    }

    func stopIfDrained() {
        guard stopping, table.count == 0, (http?.table.count ?? 0) == 0 else { return }
        replyTimer.cancel()
        sweepTimer.cancel()
        loop.stop()
    }
}

/// `1`, `0.5`, `300` — seconds as the user wrote them, without a trailing `.0`.
func formatSeconds(_ s: Double) -> String {
    s == s.rounded() && s < 1e15 ? String(Int64(s)) : String(s)
}
