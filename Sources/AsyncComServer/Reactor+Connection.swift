import AsyncComCore
import AsyncComEventLoop
import Logging

/// Per-connection work: read, frame and answer lines, write, backpressure, and the closing sequence.
extension Reactor {
    func connectionEvent(slot: UInt32, generation: UInt32, readable: Bool, writable: Bool) {
        adoptPublishedMap()
        guard let c = table.get(slot, generation) else { return }
        switch c.state {
        case .lingering:
            if readable { discardInput(c) }
            return
        case .closed:
            return
        case .open, .finishing:
            break
        }
        if let gate = c.gate, gate.isWaiting {
            gateEvent(c, gate, readable: readable, writable: writable)
            return
        }
        if writable && !flush(c) { return }
        if readable && c.isOpen && !c.paused {
            readInput(c)
            if case .closed = c.state { return }
        }
        settle(c)
    }

    // MARK: - Reading

    private func readInput(_ c: ServerConnection) {
        let now = EventLoop.monotonicNanos()
        var budget = Self.readBudget
        var peerClosed = false
        while budget > 0 && c.isOpen && !c.paused {
            // Read into the shared buffer unless a partial line is waiting (bytes must stay in order).
            let target = c.input.isEmpty ? readBuffer : c.input
            let n: Int
            let stamp: Int64
            do {
                // Plaintext keeps its one direct read(2) (stamped); TLS decrypts at most a record (16 KiB) per
                // call, and its bytes carry no kernel stamp.
                if let tls = c.tls {
                    guard let got = try tls.read(into: target, atMost: Self.readChunk) else { break }
                    n = got
                    stamp = 0
                } else {
                    guard let got = try Socket.readStamped(fd: c.fd, into: target, chunk: Self.readChunk) else { break }
                    (n, stamp) = got
                }
            } catch {
                abort(c, error)
                return
            }
            if n == 0 {
                peerClosed = true
                break
            }
            counters.add(.bytesIn, UInt64(n))
            budget -= n
            c.lastActivity = now
            // A request's wait starts when its bytes reached this host, not when a reactor got round to reading
            // them: time in the kernel's queue is then no longer lateness. The stamp is the newest byte's (a lower
            // bound for the older bytes of the same read); `queued` is how long it waited (STATS late_queued_us).
            let readAt = EventLoop.monotonicNanos()
            let age = stamp > 0 ? EventLoop.realtimeNanos() &- stamp : 0
            let queued = age > 0 ? min(UInt64(age), readAt) : 0
            processLines(c, in: target, now: readAt &- queued, queued: queued)
            if target === readBuffer {
                if !readBuffer.isEmpty && c.isOpen { c.input.append(readBuffer.readableView) }
                readBuffer.clear()
            }
            // Due replies first: the rest of the input stays in the kernel (the socket stays readable).
            if repliesDue(now: EventLoop.monotonicNanos()) { break }
        }
        rearmReplyTimer()
        if peerClosed {
            // EOF: like memcached and Redis, a peer that stops sending is gone. A full close and a half-close
            // look the same from here, and replies still pending would be written into a dead socket, so they
            // are released now. Replies already produced get one best-effort write. (QUIT ends a session
            // without losing replies.)
            if flush(c) { close(c) }
        }
    }

    /// Answers every complete line in `buffer` until the connection must stop reading.
    /// `queued`: how long the bytes waited in the kernel before they were read (0 for lines held back).
    func processLines(_ c: ServerConnection, in buffer: ByteBuffer, now: UInt64, queued: UInt64 = 0) {
        // The map once per batch of lines, not per line: reading `self.map` for each call retained and released
        // it, and both reactors share the one map object, so every line paid two atomic operations on a
        // reference count that the other core was also writing (3.6% of the server's samples, 1M x 1 s).
        let map = self.map
        let lookahead = map.tableBytes >= Self.lookaheadMapBytes
        var sinceClock = 0
        while c.isOpen && !c.paused {
            // Replies that fall due while a read is being handled go out now, not after it: one read of small
            // requests (64 KiB of batch-1 lines, ~2,000 requests) took up to 5 ms to handle, and the timer waited
            // for all of it (issue 15: the `mixed` scenario's due -> timer part, p99 ~0.5 ms and max 5 ms). A
            // clock read every `repliesCheckLines` lines costs ~25 ns per 32 requests.
            sinceClock += 1
            if sinceClock == Self.repliesCheckLines {
                sinceClock = 0
                let t = EventLoop.monotonicNanos()
                if !firingReplies && repliesDue(now: t) { fireDueReplies(now: t, reading: c) }
                guard c.isOpen else { return }
            }
            switch LineFramer.next(in: buffer.readableView, maxLine: config.maxLine) {
            case .incomplete:
                return
            case .tooLong:
                ServerProtocol.appendError(
                    id: nil, code: .lineTooLong, message: "line longer than \(config.maxLine) bytes", to: c.output)
                counters.add(.errors)
                c.state = .finishing
                buffer.clear()
                return
            case .line(let line, let consumed):
                // Short requests (batch 1) get their map buckets loaded one line ahead, so that each does not
                // wait out its own cache miss (`ServerProtocol.prefetch(line:map:)`), when the map's table is
                // too big for the cache (`lookaheadMapBytes`). Lines of 16 items are left to their own probe groups.
                if lookahead, line.count <= ServerProtocol.lookaheadBytes, case .line(let next, _) = LineFramer.next(
                    in: UnsafeRawBufferPointer(rebasing: buffer.readableView[consumed...]), maxLine: config.maxLine)
                {
                    ServerProtocol.prefetch(line: next, map: map)
                }
                handle(line: line, on: c, map: map, now: now, queued: queued)
                buffer.consume(consumed)
                if c.inflightCommands > config.maxInflightCommands || c.output.readableBytes > config.outputHighWater {
                    c.paused = true
                }
            }
        }
    }

    private func handle(line: UnsafeRawBufferPointer, on c: ServerConnection, map: DeviceMap, now: UInt64, queued: UInt64) {
        scratch.clear()
        switch ServerProtocol.handle(line: line, map: map, maxItems: config.maxItems, reply: scratch) {
        case .empty:
            break
        case .request(_, let waitNanos, let commands, let unknown):
            if waitNanos == 0 {
                c.output.append(scratch)
            } else {
                pending.insert(
                    line: scratch.readableView, deadline: now &+ waitNanos, delay: waitNanos,
                    slot: c.slot, generation: c.generation, commands: commands)
                c.inflightRequests += 1
                c.inflightCommands += commands
                c.pendingBytes += scratch.readableBytes
            }
            counters.update {
                counters.add(.requests)
                counters.add(.commands, UInt64(commands))
                counters.recordQueued(queued)
                if unknown > 0 { counters.add(.unknown, UInt64(unknown)) }
                if waitNanos != 0 {
                    counters.add(.inflightRequests)
                    counters.add(.inflightCommands, UInt64(commands))
                    counters.add(.pendingReplies)
                    counters.add(.pendingBytes, UInt64(scratch.readableBytes))
                }
            }
        case .error(_, let close):
            counters.add(.errors)
            c.output.append(scratch)
            if close { c.state = .finishing }
        case .hello:
            ServerProtocol.appendHello(helloInfo, to: c.output)
        case .ping:
            c.output.append(scratch)
        case .stats:
            ServerProtocol.appendStats(shared.stats.fields, to: c.output)
        case .quit:
            // BYE goes out after the replies still in flight, so `QUIT` ends a session without losing answers.
            c.byeLine = Array(scratch.readableView)
            c.state = .finishing
        }
    }

    // MARK: - Writing, backpressure, closing

    /// Writes what the socket takes now. False when the connection failed and was closed.
    func flush(_ c: ServerConnection) -> Bool {
        while !c.output.isEmpty {
            let n: Int
            do {
                n = try c.send(from: c.output)
            } catch {
                abort(c, error)
                return false
            }
            if n == 0 { break }
            c.bytesWritten &+= n
            counters.add(.bytesOut, UInt64(n))
        }
        return true
    }

    /// Brings a connection up to date after anything happened to it: flush, lift backpressure, finish a
    /// closing connection, and set the read/write interest to match.
    func settle(_ c: ServerConnection) {
        switch c.state {
        case .closed, .lingering: return
        case .open, .finishing: break
        }
        if !c.output.isEmpty && !flush(c) { return }
        // Lift backpressure once both have halved, and answer the lines held back while paused: the socket may
        // have nothing new to say, so no readable event would ever bring them up. Answering them can pause the
        // connection again, and the flush after it can take all of that output at once (a small high-water mark,
        // a peer that reads): then nothing is left to wake the connection (no write interest, nothing in flight),
        // so resume again until a cap really binds or the buffered lines are gone. Each round answers at least
        // one line, and the buffer holds at most one read budget of them.
        while c.paused && c.inflightCommands <= config.maxInflightCommands / 2
            && c.output.readableBytes <= config.outputHighWater / 2
        {
            c.paused = false
            guard c.isOpen && !c.input.isEmpty else { break }
            processLines(c, in: c.input, now: EventLoop.monotonicNanos())
            rearmReplyTimer()
            if !c.output.isEmpty && !flush(c) { return }
        }
        if case .finishing = c.state, c.inflightRequests == 0 {
            if let bye = c.byeLine {
                c.byeLine = nil
                bye.withUnsafeBytes { c.output.append($0) }
                if !flush(c) { return }
            }
            if c.output.isEmpty {
                beginLinger(c)
                return
            }
        }
        if c.input.isEmpty { c.input.shrinkIfEmpty(limit: Self.bufferKeep) }
        if c.output.isEmpty { c.output.shrinkIfEmpty(limit: Self.bufferKeep) }
        let wantRead = c.isOpen && !c.paused
        let wantWrite = !c.output.isEmpty
        if let w = c.watcher, w.wantsRead != wantRead || w.wantsWrite != wantWrite {
            w.setInterest(read: wantRead, write: wantWrite)
        }
    }

    /// Everything is sent: half-close, then discard what the peer still sends until it closes (or 2 s pass).
    private func beginLinger(_ c: ServerConnection) {
        c.tls?.close()
        Socket.shutdownWrite(fd: c.fd)
        c.state = .lingering(deadline: EventLoop.monotonicNanos() &+ Self.lingerNanos)
        c.input.clear()
        c.input.shrinkIfEmpty(limit: 256)
        c.output.shrinkIfEmpty(limit: 256)
        c.watcher?.setInterest(read: true, write: false)
    }

    private func discardInput(_ c: ServerConnection) {
        var budget = Self.readBudget
        defer { readBuffer.clear() }
        while budget > 0 {
            readBuffer.clear()
            do {
                guard let n = try Socket.read(fd: c.fd, into: readBuffer, chunk: Self.readChunk) else { return }
                if n == 0 {
                    close(c)
                    return
                }
                counters.add(.bytesIn, UInt64(n))
                budget -= n
            } catch {
                close(c)
                return
            }
        }
    }

    private func abort(_ c: ServerConnection, _ error: SystemError) {
        logger.debug("connection failed", metadata: ["error": "\(error)"])
        close(c)
    }

    /// Closes at once. Replies still pending for it are dropped: counted out of in-flight now, and skipped when
    /// due because the slot's generation has moved on.
    func close(_ c: ServerConnection) {
        if case .closed = c.state { return }
        let abandoned = c.inflightRequests
        counters.update {
            // Its replies stay stored (pending_*) until due or reclaimed; they are no longer in flight.
            counters.subtract(.inflightRequests, UInt64(c.inflightRequests))
            counters.subtract(.inflightCommands, UInt64(c.inflightCommands))
            counters.subtract(.connections)
        }
        if abandoned > 0 {
            pending.abandon(replies: c.inflightRequests, bytes: c.pendingBytes)
            c.inflightRequests = 0
            c.inflightCommands = 0
            c.pendingBytes = 0
        }
        c.state = .closed
        c.watcher?.cancel()
        Socket.close(fd: c.fd)
        table.release(c)
        retired.append(c)  // the watcher may be inside its own callback right now
        if c.gate != nil { dropGate(c) } else { shared.releaseConnection() }
        // Out of the table first, so that the reclaim sees this connection's replies as stale.
        if abandoned > 0 { reclaimStaleReplies() }
        stopIfDrained()
    }
}
