import AsyncComCore
import AsyncComEventLoop
import AsyncComTLS
import Logging

/// The client engine of one job, confined to its loop thread: pulls commands, batches them per server,
/// pipelines requests over the connections, matches replies by id, re-sends on timeout or connection loss,
/// fails over between servers, and accounts every command exactly once.
///
/// Every event callback ends with `settle()`, the loop's `afterCallback`: pull what fits, send what is queued,
/// one write per dirty connection, hand results over, and check whether the job is complete.
///
/// A callback does a bounded amount of work (`pullBudget` commands, `outputHighWater` unsent bytes per
/// connection) and then returns to the loop, which comes back through `resumeTimer` when more is ready to go:
/// replies are read promptly even while millions of commands are still being pulled, so their measured
/// latency is the server's, not the time the engine spent busy elsewhere.
///
/// Hot stored properties are marked `@exclusivity(unchecked)`: the engine, its connections and its servers
/// live on one thread, no method hands out overlapping inout accesses to them (the tests run with the checks
/// on in debug builds before these marks were added), and the runtime checks cost a sixth of the client's CPU.
final class Engine {
    let configuration: ClientConfiguration
    /// For `tls://` servers (nil when there are none, or when the CA file cannot be used: validate() says why).
    let tlsContext: TLSContext?
    let logger: Logger
    let loop: EventLoop
    let requestTimeoutNanos: UInt64
    let connectTimeoutNanos: UInt64
    /// The engine's clock (CLOCK_MONOTONIC nanoseconds unless a test injects another): every decision takes its
    /// `now` from here, and timers are armed relative to it.
    let now: () -> UInt64
    /// Batch, window and in-flight budget (`DepthPolicy`): the one place they are clamped to a server's limits.
    let depth: DepthPolicy

    /// The source, when it can only hand out `CommandEntry` values one at a time.
    @exclusivity(unchecked) private var source: (any CommandSource)?
    /// The source, when it can hand out commands in place (then `source` is nil).
    @exclusivity(unchecked) private var inPlaceSource: (any InPlaceCommandSource)?
    private let onResult: ((CommandResult) -> Void)?
    private let onAnswer: ((AnsweredRequest) -> Void)?
    let sendLowWater: Int
    private let onFlush: (() -> Void)?
    private let onProgress: ((JobProgress) -> Void)?
    private let control: JobControl
    /// Per-command state is kept only when someone wants per-command results.
    private let wantsResults: Bool
    private let ordered: Bool

    @exclusivity(unchecked) private(set) var servers: [ServerState] = []
    @exclusivity(unchecked) private(set) var connections: [ClientConnection] = []
    private let sharder: Sharder
    private let table = RequestTable()
    @exclusivity(unchecked) private var stats: JobStats
    @exclusivity(unchecked) private var ring = ReorderRing()
    /// Connections with output appended during this callback.
    @exclusivity(unchecked) var dirty: [ClientConnection] = []
    /// Command lists of answered requests, reused for new batches: a request costs no allocation in steady
    /// state, and a burst of answers frees nothing while the clock runs (the job's end frees them). At most as
    /// many as the windows hold requests (`spareLimit`). (Item bytes are reused by the table's `ItemSlab`.)
    @exclusivity(unchecked) private var spareCommandLists: [[PendingCommand]] = []
    private let spareLimit: Int

    @exclusivity(unchecked) private var nextSequence = 0
    /// Commands pulled and routed whose result is not known yet (queued, batching, or in flight).
    @exclusivity(unchecked) private var outstanding = 0
    @exclusivity(unchecked) private var sourceExhausted = false
    /// The last `fill` stopped at its budget with room left: the loop must come back for more.
    @exclusivity(unchecked) private var pullCut = false
    /// Fires at once on the next loop iteration, after pending I/O events: how a callback that stopped at its
    /// budget gets to go on.
    private var resumeTimer: EventTimer?
    /// Pulling stops when the oldest undelivered result is this far behind (ordered delivery only): four
    /// times what the connections hold, at most twice the budget.
    @inline(__always) private func spanLimit(capacity: Int) -> Int {
        min(max(min(capacity, depth.maxInflight) * 4, 1024), max(1024, 2 * depth.maxInflight))
    }
    private let startNanos: UInt64
    private var notifier: Notifier?
    private var progressTimer: EventTimer?
    @exclusivity(unchecked) private var settling = false
    @exclusivity(unchecked) private(set) var finished = false
    private(set) var outcome: Result<JobSummary, any Error>?

    /// A lost request is re-sent at most this many times (a request that crashes its server must end somewhere).
    static let maxLosses = 16
    static let progressIntervalNanos: UInt64 = 250_000_000
    /// Commands pulled from the source per callback: about a millisecond of work, so that replies wait at most
    /// that long to be read.
    static let pullBudget = 2048
    /// Unsent bytes per connection beyond which no more requests are queued on it: requests are stamped when
    /// queued for writing, so a long queue in user space would count as the server's latency.
    static let outputHighWater = 64 << 10

    init(configuration: ClientConfiguration, logger: Logger, loop: EventLoop, payload: JobPayload, control: JobControl,
         clock: @escaping () -> UInt64 = EventLoop.monotonicNanos) {
        self.configuration = configuration
        self.tlsContext = try? ClientTransport.context(for: configuration)
        self.logger = logger
        self.loop = loop
        self.now = clock
        self.depth = DepthPolicy(configuration)
        self.requestTimeoutNanos = configuration.requestTimeout.secondsAsNanos
        self.connectTimeoutNanos = configuration.connectTimeout.secondsAsNanos
        if let inPlace = payload.source as? any InPlaceCommandSource {
            self.inPlaceSource = inPlace
        } else {
            self.source = payload.source
        }
        self.onResult = payload.onResult
        self.onAnswer = payload.onAnswer
        self.sendLowWater = configuration.sendLowWater
        self.onFlush = payload.onFlush
        self.onProgress = payload.onProgress
        self.control = control
        self.wantsResults = payload.onResult != nil || payload.onAnswer != nil
        self.ordered = configuration.ordered && payload.onResult != nil
        self.sharder = Sharder(serverCount: configuration.servers.count)
        self.stats = JobStats(serverCount: configuration.servers.count)
        self.spareLimit = min(configuration.maxInflight / max(1, configuration.batch) + configuration.servers.count, 1 << 20)
        self.startNanos = clock()
    }

    /// Arms `timer` for `deadline` on the engine's clock (at once when it has passed).
    func arm(_ timer: EventTimer, at deadline: UInt64) {
        let t = now()
        timer.schedule(afterNanos: deadline > t ? deadline - t : 0)
    }

    // MARK: launch

    /// Starts a job on a new loop thread; `completion` runs on that thread when the job ends.
    static func launch(configuration: ClientConfiguration, logger: Logger, payload: UncheckedTransfer<JobPayload>, control: JobControl,
                       completion: @escaping @Sendable (Result<JobSummary, any Error>) -> Void) throws(ClientError) {
        let transfer = payload
        do {
            try LoopThread.spawn {
                let result: Result<JobSummary, any Error>
                do {
                    let loop = try EventLoop()
                    result = withExtendedLifetime(loop) {
                        let engine = Engine(configuration: configuration, logger: logger, loop: loop, payload: transfer.value, control: control)
                        do {
                            try engine.start()
                        } catch {
                            engine.abort(error)
                        }
                        if !engine.finished { loop.run() }
                        // Every libevent object is freed here, on the loop thread, before the loop itself.
                        engine.teardown()
                        return engine.outcome ?? .failure(ClientError.startup("the event loop stopped before the job ended"))
                    }
                } catch {
                    result = .failure(ClientError.startup("\(error)"))
                }
                completion(result)
            }
        } catch {
            throw .startup("\(error)")
        }
    }

    private func start() throws {
        // Every callback of the job's loop ends here (it does nothing once the job has finished).
        loop.afterCallback = { [unowned self] in self.settle() }
        let notifier = try Notifier(loop: loop) { [unowned self] in
            if self.control.isCancelled {
                self.abort(CancellationError())
            } else if self.control.isInterrupted {
                self.finishInterrupted()
            }
        }
        self.notifier = notifier
        guard control.attach(notifier) else { throw CancellationError() }

        let startNow = now()
        for (i, endpoint) in configuration.servers.enumerated() {
            var health = ServerHealth(connectTimeoutNanos: connectTimeoutNanos, retries: configuration.retries)
            // A server that is not up yet gets connectTimeout from the start of the job.
            health.start(now: startNow)
            // One reactor serves a Unix socket (its HELLO still counts them all): nothing to cover there.
            let plan = ConnectionPlan(fixed: configuration.connectionsPerServer, maxConnections: ClientConfiguration.maxConnectionsPerServer,
                                      coverable: !endpoint.isUnix)
            let server = ServerState(index: i, endpoint: endpoint, batch: depth.unlimited.batch, health: health, plan: plan)
            // Resolved once per job, not at every reconnect (a failed resolution is retried at the next attempt).
            server.resolved = try? Socket.resolve(endpoint)
            let downTimer = EventTimer(loop: loop) { [unowned self, unowned server] in self.downTimerFired(server) }
            server.downTimer = downTimer
            servers.append(server)
            for _ in 0..<plan.initial { makeConnection(to: server) }
            armDownTimer(server)
        }
        if onProgress != nil {
            let timer = EventTimer(loop: loop) { [unowned self] in self.reportProgress() }
            progressTimer = timer
            timer.schedule(afterNanos: Engine.progressIntervalNanos)
        }
        resumeTimer = EventTimer(loop: loop) {}  // wakes the loop: its afterCallback settles
        inPlaceSource?.startReading { [control] in control.wake() }
        for c in connections { c.connect() }
        settle()
    }

    @discardableResult
    private func makeConnection(to server: ServerState) -> ClientConnection {
        let c = ClientConnection(engine: self, server: server, index: connections.count)
        c.makeTimer(loop: loop)
        connections.append(c)
        server.connections.append(c)
        return c
    }

    /// The servers' `max_inflight` per connection binds the job's depth while the budget has room: more
    /// connections (`ConnectionPlan.grow`).
    private func growConnections() {
        for server in servers where server.isUp {
            guard let c = server.connections.first(where: { $0.state == .ready }) else { continue }
            let wanted = depth.connectionsForBudget(servers: servers.count, perConnection: c.window * server.batch,
                                                    batch: server.batch)
            let open = server.plan.grow(wanted: wanted)
            if open > 0 {
                logger.debug("opening more connections: max_inflight binds", metadata: [
                    "server": "\(server.endpoint)", "count": "\(open)"])
            }
            for _ in 0..<open { makeConnection(to: server).connect() }
        }
    }

    /// A connection's output has stayed unwritten for `OutputLag.lagAfter`: its server reads slower than this
    /// client writes. Its reactors without a connection get one (`ConnectionPlan.serverLagged`, once per job).
    func serverLagged(on c: ClientConnection) {
        let server = c.server
        let open = server.plan.serverLagged()
        guard open > 0 else { return }
        logger.info("server lags behind: opening connections to its other reactors", metadata: [
            "server": "\(server.endpoint)", "reactors": "\(server.plan.reactors ?? 1)", "covered": "\(server.plan.coveredCount)"])
        for _ in 0..<open { makeConnection(to: server).connect() }
    }

    private func armDownTimer(_ server: ServerState) {
        guard let timer = server.downTimer else { return }
        if let deadline = server.health.downDeadline { arm(timer, at: deadline) } else { timer.cancel() }
    }

    // MARK: the end of every callback

    /// The loop's `afterCallback`: runs after every callback of the job's loop.
    func settle() {
        guard !finished, !settling else { return }
        settling = true
        defer { settling = false }
        fill()
        guard !finished else { return }
        for s in servers where !s.queue.isEmpty && s.isUp { pump(s) }
        flushDirty()
        if let onFlush { onFlush() }
        if sourceExhausted && outstanding == 0 && table.count == 0 {
            finish()
        } else if hasMoreToDo, let resumeTimer, !resumeTimer.isPending {
            resumeTimer.schedule(afterNanos: 0)
        }
    }

    /// Work this callback left for the next one: commands it did not pull for lack of budget, or queued
    /// requests that a ready connection has room for (they were held back by `outputHighWater`, and the
    /// connection's output has drained since). A connection with unsent output calls back by itself when its
    /// socket takes more, and one with a full window when replies come.
    private var hasMoreToDo: Bool {
        if pullCut || !dirty.isEmpty { return true }
        for s in servers where !s.queue.isEmpty && s.isUp {
            for c in s.connections where c.state == .ready && c.inFlight < c.window && c.output.isEmpty { return true }
        }
        return false
    }

    private func flushDirty() {
        // A flush can lose a connection, whose requests then go back to a queue, and a flush that emptied an
        // output leaves room under the high-water mark: pump and flush again (bounded). The loop always ends
        // with a flush: requests appended to an output and never written would wait for the next event, which
        // with every reply a second away stalled the job for that second.
        var rounds = 0
        while !dirty.isEmpty {
            let batch = dirty
            dirty.removeAll(keepingCapacity: true)
            for c in batch {
                c.isDirty = false
                c.flush()
            }
            rounds += 1
            if rounds == 4 { break }
            for s in servers where !s.queue.isEmpty && s.isUp { pump(s) }
        }
    }

    // MARK: pulling and batching

    /// Commands the servers that are not down can hold in flight; unlimited when every server is down (the
    /// commands then fail at once).
    private var capacity: Int {
        var total = 0
        for s in servers where !s.isDown {
            for c in s.connections where c.state != .closed { total += c.window * s.batch }
        }
        return total == 0 ? Int.max : depth.capacity(connectionCommands: total)
    }

    private func fill() {
        pullCut = false
        guard !sourceExhausted else { return }
        let capacity = self.capacity
        if outstanding < capacity && control.mayProduce() {
            var budget = Engine.pullBudget
            while budget > 0 && outstanding < capacity && !finished {
                var limit = min(budget, capacity - outstanding)
                if ordered { limit = min(limit, spanLimit(capacity: capacity) - (nextSequence - ring.base)) }
                guard limit > 0 else { break }
                let pulled: Int
                do {
                    pulled = try pull(limit: limit)
                } catch {
                    abort(ClientError.source(error))
                    return
                }
                budget -= pulled
                if pulled < limit {
                    // Input still to come (a pipe that paused) wakes the loop when it arrives.
                    if inPlaceSource?.isAwaitingInput != true { sourceExhausted = true }
                    break
                }
            }
            pullCut = budget == 0 && !sourceExhausted && outstanding < capacity
        }
        if !sourceExhausted && outstanding >= capacity && depth.windowCap == nil && capacity < depth.maxInflight {
            growConnections()
        }
        // A partial batch goes out when nothing more is coming, or when its server has nothing else to do
        // (so that one slow trickle of commands still moves, and ordered delivery cannot wait on it forever).
        for s in servers where s.partialCount > 0 {
            if sourceExhausted || (s.queue.isEmpty && s.inFlight == 0) { closeBatch(s) }
        }
    }

    /// Pulls and routes up to `limit` commands; fewer means the source is exhausted.
    private func pull(limit: Int) throws -> Int {
        if inPlaceSource != nil {
            // No CommandEntry (and no String) while the command is in flight: when results are wanted, the entry
            // is rebuilt from the request's item bytes as the result is delivered.
            return try inPlaceSource!.pull(limit: limit) { device, item, commandStart, line in
                route(device: device, item: item, commandStart: commandStart, line: line, entry: nil)
            }
        }
        var pulled = 0
        while pulled < limit, let entry = try source!.next() {
            var text = entry.item
            text.withUTF8 {
                route(device: entry.device, item: UnsafeRawBufferPointer($0), commandStart: entry.commandStart, line: entry.line,
                      entry: wantsResults ? entry : nil)
            }
            pulled += 1
        }
        return pulled
    }

    /// Numbers a command and adds it to its server's batch. `entry`: the source's own entry, kept (when results
    /// are wanted) for sources that hand out entries rather than bytes.
    @inline(__always)
    private func route(device: DeviceAddress, item: UnsafeRawBufferPointer, commandStart: Int, line: Int, entry: CommandEntry?) {
        let sequence = nextSequence
        nextSequence += 1
        let s: Int
        if servers.count == 1 && !servers[0].isDown {
            // One server that is not down: no hashing, no routing.
            s = 0
        } else {
            let key = Sharder.hash(device)
            guard let picked = sharder.pick(key: key, isAlive: { !self.servers[$0].isDown }) else {
                fail(sequence: sequence, key: key, device: device, item: item, commandStart: commandStart, line: line, entry: entry)
                return
            }
            s = picked
        }
        // `servers` holds the server for the whole call: no retain and release of it per command.
        Unmanaged.passUnretained(servers[s])._withUnsafeGuaranteedRef { server in
            if !server.hasBatch {
                var commands: [PendingCommand] = []
                if wantsResults {
                    commands = spareCommandLists.popLast() ?? []
                    commands.reserveCapacity(server.batch)
                }
                server.startBatch(commands: commands)
            }
            let command = wantsResults
                ? PendingCommand(sequence: sequence, line: line, device: device, itemLength: item.count, commandStart: commandStart)
                : nil
            let count = server.addToBatch(item: item, command: command, entry: wantsResults ? entry : nil)
            outstanding += 1
            if count >= server.batch { closeBatch(server) }
        }
    }

    /// No server left for a command: it fails now, naming the server it belongs to.
    private func fail(sequence: Int, key: UInt64, device: DeviceAddress, item: UnsafeRawBufferPointer, commandStart: Int,
                      line: Int, entry: CommandEntry?) {
        let home = servers[sharder.home(key: key)]
        stats.recordFailure(server: home.index, commands: 1, reason: home.unreachableReason)
        if onResult != nil {
            let entry = entry ?? CommandEntry(device: device, item: String(decoding: item, as: UTF8.self),
                                              commandStart: commandStart, line: line)
            deliver(CommandResult(sequence: sequence, entry: entry, outcome: .failed(reason: home.unreachableReason),
                                  server: home.endpoint, latencyNanos: 0))
        }
    }

    /// Gives a finished request's item bytes back to the slab and keeps its command list for later batches.
    private func recycle(_ request: inout Request) {
        table.releaseStorage(of: request)
        if request.commands.capacity > 0 && request.commands.capacity <= 4096 && spareCommandLists.count < spareLimit {
            var commands = request.commands
            request.commands = []  // `commands` is now the only reference: emptying it keeps its storage
            commands.removeAll(keepingCapacity: true)
            spareCommandLists.append(commands)
        }
    }

    /// Turns the server's partial batch into a request at the back of its queue.
    private func closeBatch(_ server: ServerState) {
        guard let batch = server.takeBatch() else { return }
        let slot = table.insert(items: batch.items, itemCount: batch.count, commands: batch.commands, server: server.index)
        if !batch.entries.isEmpty { table[slot].entries = batch.entries }
        stats.requests += 1
        enqueue(slot: slot, on: server)
    }

    private func enqueue(slot: Int, on server: ServerState, front: Bool = false) {
        let entry = QueuedRequest(slot: Int32(slot), id: table[slot].id)
        if front { server.queue.prepend(entry) } else { server.queue.append(entry) }
    }

    /// The next queued request still waiting (skips those answered meanwhile by a late reply).
    private func dequeue(from server: ServerState) -> Int? {
        while let e = server.queue.popFirst() {
            let slot = Int(e.slot)
            if table.isLive(slot: slot, id: e.id) && table[slot].connection < 0 { return slot }
        }
        return nil
    }

    // MARK: sending

    /// Fills the windows of the server's ready connections from its queue.
    private func pump(_ server: ServerState) {
        let n = server.connections.count
        var tried = 0
        while !server.queue.isEmpty && tried < n {
            let c = server.connections[server.nextConnection % n]
            server.nextConnection = (server.nextConnection + 1) % n
            tried += 1
            guard c.state == .ready else { continue }
            let now = self.now()
            while c.inFlight < c.window && c.output.readableBytes < Engine.outputHighWater, let slot = dequeue(from: server) {
                send(slot: slot, on: c, now: now)
            }
        }
    }

    private func send(slot: Int, on c: ClientConnection, now: UInt64) {
        // Field by field: reading the whole Request would copy it (and retain its buffer and commands).
        if table[slot].itemCount > c.maxItems || table[slot].items.count + ItemsCodec.requestOverhead > c.maxLine {
            // Built for a server with larger limits (before its HELLO, or before a failover): split, new ids.
            split(slot: slot, for: c)
            return
        }
        let id = table[slot].id
        ClientProtocol.beginRequest(id: id, to: c.output)
        c.output.append(table[slot].items.bytes)
        ClientProtocol.endRequest(to: c.output)
        let deadline = now &+ requestTimeoutNanos
        let epoch = table[slot].epoch &+ 1
        table[slot].connection = c.index
        table[slot].epoch = epoch
        if table[slot].firstSentNanos == 0 { table[slot].firstSentNanos = now }
        c.inFlight += 1
        c.timeouts.push(TimeoutEntry(deadline: deadline, slot: Int32(slot), epoch: epoch, id: id))
        c.silence.workPending(now: now)
        if let timer = c.timer, !timer.isPending { c.armTimer(requestDeadline: deadline) }
        stats.servers[c.server.index].requestsSent += 1
        c.markDirty()
    }

    private func split(slot: Int, for c: ClientConnection) {
        let old = table.remove(slot: slot)
        let chunks = ItemsCodec.split(old.items.bytes, maxItems: c.maxItems, maxLine: c.maxLine)
        table.releaseStorage(of: old)
        for chunk in chunks.reversed() {
            let commands = wantsResults ? Array(old.commands[chunk.indices]) : []
            let s = table.insert(items: chunk.items.readableView, itemCount: chunk.indices.count, commands: commands, server: old.server)
            if !old.entries.isEmpty { table[s].entries = Array(old.entries[chunk.indices]) }
            table[s].timeouts = old.timeouts
            table[s].losses = old.losses
            table[s].firstSentNanos = old.firstSentNanos
            stats.requests += 1
            enqueue(slot: s, on: c.server, front: true)
        }
        logger.debug("request split for the server's limits", metadata: [
            "id": "\(old.id)", "items": "\(old.itemCount)", "chunks": "\(chunks.count)"])
    }

    // MARK: replies

    /// Whether a timeout entry still describes the request's current send on `c`.
    @inline(__always) func isInFlight(_ e: TimeoutEntry, on c: ClientConnection) -> Bool {
        let slot = Int(e.slot)
        guard table.isLive(slot: slot, id: e.id) else { return false }
        return table[slot].connection == c.index && table[slot].epoch == e.epoch
    }

    func handleResults(id: UInt64, on c: ClientConnection) {
        guard let slot = table.slot(forID: id) else {
            stats.lateReplies += 1
            return
        }
        let count = table[slot].itemCount
        guard c.results.count == count else {
            badReply(on: c, reason: "RES \(id) has \(c.results.count) results for \(count) items", line: nil)
            return
        }
        var request = table.remove(slot: slot)
        if wantsResults { table.prefetch(id: id &+ 1) }
        if request.connection >= 0 { connections[request.connection].inFlight -= 1 }
        c.server.health.answered()
        let now = self.now()
        let latency = request.firstSentNanos == 0 ? 0 : now &- request.firstSentNanos
        stats.recordAnswer(server: c.server.index, results: c.results, latencyNanos: latency)
        outstanding -= count
        if wantsResults {
            let endpoint = c.server.endpoint
            let results = c.results
            if let onAnswer {
                onAnswer(AnsweredRequest(latencyNanos: latency, clientNanos: now > c.arrivedNanos ? now &- c.arrivedNanos : 0,
                                         server: endpoint, commands: request.commands, results: results))
            }
            deliverResults(of: request, server: endpoint, latency: latency) { CommandOutcome(results[$0]) }
        }
        recycle(&request)
    }

    /// Delivers a `CommandResult` per command of `request` to `onResult`, command `i` with `outcome(i)`: from the
    /// source's own entries when it handed out entries, else from the request's item bytes (short items inline,
    /// see `InlineItem`; the items are ` item item ...`, one space before each, see ClientProtocol.appendItem).
    @inline(__always)
    private func deliverResults(of request: Request, server: Endpoint, latency: UInt64, outcome: (Int) -> CommandOutcome) {
        // Bound once: reading the optional closure per result would retain and release its context each time.
        guard let onResult else { return }
        if !request.entries.isEmpty {
            for (i, entry) in request.entries.enumerated() {
                deliver(CommandResult(sequence: request.commands[i].sequence, entry: entry, outcome: outcome(i),
                                      server: server, latencyNanos: latency), to: onResult)
            }
            return
        }
        let base = UnsafeRawPointer(request.items.base)
        var start = 0
        for i in request.commands.indices {
            let command = request.commands[i]
            start += 1
            deliver(CommandResult(
                sequence: command.sequence, item: UnsafeRawBufferPointer(start: base + start, count: command.itemLength),
                commandStart: command.commandStart, device: command.device, line: command.line,
                outcome: outcome(i), server: server, latencyNanos: latency), to: onResult)
            start += command.itemLength
        }
    }

    /// After a read: drop answered entries from the front of the timeout FIFO so it stays small.
    func repliesProcessed(on c: ClientConnection) {
        _ = c.timeouts.trimFront { isInFlight($0, on: c) }
        c.timeouts.compactIfNeeded(liveCount: c.inFlight) { isInFlight($0, on: c) }
    }

    /// `ERR <id> ...`: the server rejected the request itself; re-sending would not help.
    func handleRequestError(id: UInt64, code: String, message: String, on c: ClientConnection) {
        guard let slot = table.slot(forID: id) else {
            stats.lateReplies += 1
            return
        }
        let connection = table[slot].connection
        if connection >= 0 { connections[connection].inFlight -= 1 }
        failRequest(slot: slot, reason: message.isEmpty ? code : "\(code) \(message)")
    }

    func badReply(on c: ClientConnection, reason: String, line: UnsafeRawBufferPointer?) {
        stats.badReplies += 1
        // Rate-limited: the first few, then one in a thousand.
        if stats.badReplies <= 5 || stats.badReplies % 1000 == 0 {
            var text = ""
            if let line { text = String(decoding: line.prefix(120), as: UTF8.self) }
            logger.warning("ignoring a bad reply line", metadata: [
                "server": "\(c.server.endpoint)", "reason": "\(reason)", "line": "\(text)", "count": "\(stats.badReplies)"])
        }
    }

    // MARK: results

    private func deliver(_ result: CommandResult) {
        guard let onResult else { return }
        deliver(result, to: onResult)
    }

    @inline(__always)
    private func deliver(_ result: CommandResult, to onResult: (CommandResult) -> Void) {
        if ordered {
            ring.insert(result)
            ring.drain(onResult)
        } else {
            onResult(result)
        }
    }

    private func failRequest(slot: Int, reason: String) {
        var request = table.remove(slot: slot)
        outstanding -= request.itemCount
        stats.recordFailure(server: request.server, commands: request.itemCount, reason: reason)
        if onResult != nil {
            let endpoint = servers[request.server].endpoint
            let now = self.now()
            let latency = request.firstSentNanos == 0 ? 0 : now &- request.firstSentNanos
            deliverResults(of: request, server: endpoint, latency: latency) { _ in .failed(reason: reason) }
        }
        recycle(&request)
    }

    // MARK: timeouts, losses, failover

    func expireTimeouts(on c: ClientConnection, now: UInt64) {
        let (expired, next) = c.timeouts.popExpired(now: now) { isInFlight($0, on: c) }
        c.armTimer(requestDeadline: next)
        for e in expired {
            let slot = Int(e.slot)
            c.inFlight -= 1
            table[slot].connection = -1
            table[slot].timeouts += 1
            stats.servers[c.server.index].timeouts += 1
            let attempts = table[slot].timeouts
            if attempts > configuration.retries {
                failRequest(slot: slot, reason: "timeout after \(attempts) attempt\(attempts == 1 ? "" : "s")")
            } else {
                stats.retries += 1
                requeueFront(slot: slot, preferring: c.server)
            }
        }
    }

    /// Puts a request back at the front of a queue: its own server's when that server is up, else another up
    /// server's, else its own again (to wait for a reconnect, or to fail over when the server goes down).
    private func requeueFront(slot: Int, preferring server: ServerState) {
        var target = server
        if !server.isUp {
            let key = SplitMix64.mix(table[slot].id)
            if let s = sharder.pick(key: key, isAlive: { self.servers[$0].isUp }) {
                target = servers[s]
            } else if server.isDown {
                if let s = sharder.pick(key: key, isAlive: { !self.servers[$0].isDown }) {
                    target = servers[s]
                } else {
                    failRequest(slot: slot, reason: server.unreachableReason)
                    return
                }
            }
        }
        table[slot].server = target.index
        enqueue(slot: slot, on: target, front: true)
    }

    func connectionReady(_ c: ClientConnection, limits: ServerLimits, batch: Int, isReconnect: Bool) {
        let server = c.server
        server.quietConnectFailures = true
        server.limits = limits
        server.batch = batch
        if !isReconnect {
            let decision = server.plan.handshake(limits: limits)
            let open: Int
            switch decision {
            case .keep(let n):
                open = n
            case .retire(let n):
                open = n
                if server.isUp {
                    c.retire()
                    for _ in 0..<n { makeConnection(to: server).connect() }
                    // The last attempt usually lands on a covered reactor: say so here too.
                    logCoverageFailure(server)
                    return
                }
            }
            if open > 0 {
                logger.debug("opening more connections", metadata: [
                    "server": "\(server.endpoint)", "count": "\(open)", "reactors": "\(limits.reactors ?? 1)"])
            }
            for _ in 0..<open { makeConnection(to: server).connect() }
            logCoverageFailure(server)
        }
        let wasDown = server.health.connectionReady()
        armDownTimer(server)
        if isReconnect { stats.servers[server.index].reconnects += 1 }
        if wasDown {
            logger.notice("server is back up", metadata: ["server": "\(server.endpoint)"])
        } else if isReconnect {
            logger.info("reconnected", metadata: ["server": "\(server.endpoint)"])
        }
    }

    private var coverageLogged: Set<Int> = []

    /// Once per server: its coverage attempts ran out with reactors uncovered.
    private func logCoverageFailure(_ server: ServerState) {
        guard server.plan.coverageFailed, !coverageLogged.contains(server.index) else { return }
        coverageLogged.insert(server.index)
        logger.warning("could not reach every server reactor", metadata: [
            "server": "\(server.endpoint)", "covered": "\(server.plan.coveredCount)", "reactors": "\(server.plan.reactors ?? 1)"])
    }

    func connectionLost(_ c: ClientConnection, wasReady: Bool, helloFailure: Bool, stalled: Bool, reason: String, requests: [TimeoutEntry]) {
        let server = c.server
        if wasReady {
            stats.servers[server.index].connectionsLost += 1
            if stalled || !requests.isEmpty {
                logger.warning("connection lost", metadata: [
                    "server": "\(server.endpoint)", "reason": "\(reason)", "in_flight": "\(requests.count)"])
            } else {
                logger.info("connection lost", metadata: ["server": "\(server.endpoint)", "reason": "\(reason)", "in_flight": "0"])
            }
            let othersUp = servers.contains { $0 !== server && $0.isUp }
            if server.health.connectionLost(now: now(), stalled: stalled, othersUp: othersUp) == .down {
                markDown(server)
            }
            armDownTimer(server)
        } else {
            logger.debug("handshake failed", metadata: ["server": "\(server.endpoint)", "reason": "\(reason)"])
        }
        // Back to the front of the queue in send order.
        for e in requests.reversed() {
            let slot = Int(e.slot)
            table[slot].connection = -1
            if stalled {
                // Its server heard nothing for a whole timeout: a timeout, not a loss.
                table[slot].timeouts += 1
                stats.servers[server.index].timeouts += 1
                let attempts = table[slot].timeouts
                if attempts > configuration.retries {
                    failRequest(slot: slot, reason: "timeout after \(attempts) attempt\(attempts == 1 ? "" : "s") (server stalled)")
                    continue
                }
                stats.retries += 1
            } else {
                table[slot].losses += 1
                if table[slot].losses > Engine.maxLosses {
                    failRequest(slot: slot, reason: "connection lost \(table[slot].losses) times while in flight (\(reason))")
                    continue
                }
                stats.resends += 1
            }
            requeueFront(slot: slot, preferring: server)
        }
        if !wasReady { attemptFailed(on: server, strike: helloFailure) }
    }

    /// `c` heard nothing for a request timeout with requests pending (`SilenceWatch`): its server has stalled.
    /// Every connection to it goes (the others share its fate, and would each take another timeout to show it);
    /// requests in flight on the stalled one count a timeout, those on the others a loss. One strike for the
    /// server, and down at once when another server can take its work (`ServerHealth`).
    func stalled(_ c: ClientConnection) {
        stats.servers[c.server.index].stalls += 1
        let reason = "no reply within \(configuration.requestTimeout) s with \(c.inFlight) request\(c.inFlight == 1 ? "" : "s") in flight (server stalled)"
        for other in c.server.connections where other !== c && other.state == .ready {
            other.lost(reason: "another connection to the server stalled")
        }
        c.lost(reason: reason, stalled: true)
    }

    private func downTimerFired(_ server: ServerState) {
        if server.health.deadlinePassed(now: now(), attemptsInProgress: hasAttemptInProgress(server)) == .down {
            markDown(server)
        }
        armDownTimer(server)
    }

    private func hasAttemptInProgress(_ server: ServerState) -> Bool {
        server.connections.contains(where: { $0.state == .connecting || $0.state == .handshaking })
    }

    /// A connect or handshake attempt failed (`strike`: it took a whole timeout or the server refused the
    /// handshake): the server may be down now.
    func attemptFailed(on server: ServerState, strike: Bool) {
        if server.health.attemptFailed(strike: strike, attemptsInProgress: hasAttemptInProgress(server)) == .down {
            markDown(server)
        }
        armDownTimer(server)
    }

    /// The server stays unreachable: its queued requests and partial batch move to the servers still alive,
    /// or fail when none is left. It keeps being probed; new commands go elsewhere until it answers.
    private func markDown(_ server: ServerState) {
        server.downTimer?.cancel()
        if server.health.isDead {
            // Stalled retries + 1 times without answering a request in between: given up for the rest of the job
            // (no more probing, no new work), so a server that answers HELLO and black-holes requests cannot
            // take new work again and stretch the time to fail.
            for c in server.connections { c.close() }
        }
        logger.error("server is down", metadata: ["server": "\(server.endpoint)", "error": "\(server.lastError)"])
        closeBatch(server)
        var slots: [Int] = []
        while let slot = dequeue(from: server) { slots.append(slot) }
        for slot in slots {
            let key = SplitMix64.mix(table[slot].id)
            if let s = sharder.pick(key: key, isAlive: { !self.servers[$0].isDown }) {
                table[slot].server = s
                enqueue(slot: slot, on: servers[s])
            } else {
                failRequest(slot: slot, reason: server.unreachableReason)
            }
        }
    }

    // MARK: progress and the end

    private func reportProgress() {
        guard let onProgress, !finished else { return }
        let elapsed = Double(now() &- startNanos) / 1e9
        var inFlightCommands = 0
        for i in table.liveSlots where table[i].connection >= 0 { inFlightCommands += table[i].itemCount }
        onProgress(JobProgress(done: stats.done, pulled: nextSequence, sourceExhausted: sourceExhausted,
                               inFlight: inFlightCommands, failed: stats.failed, elapsedSeconds: elapsed,
                               commandsPerSecond: elapsed > 0 ? Double(stats.done) / elapsed : 0))
        progressTimer?.schedule(afterNanos: Engine.progressIntervalNanos)
    }

    private func summary() -> JobSummary {
        stats.summary(elapsedNanos: now() &- startNanos,
                      malformed: inPlaceSource?.malformedCount ?? source?.malformedCount ?? 0,
                      endpoints: servers.map(\.endpoint), upAtEnd: servers.map(\.isUp),
                      connections: servers.map(\.plan))
    }

    private func finish() {
        guard !finished else { return }
        let summary = summary()
        outcome = .success(summary)
        finished = true
        teardown()
        loop.stop()
    }

    /// Ends the job early on request (`JobInterruption`): nothing more is pulled or sent; results held back for
    /// input order are handed over (gaps skipped), and the summary counts the commands left without a result.
    private func finishInterrupted() {
        guard !finished else { return }
        if ordered, let onResult { ring.drainSkippingGaps(onResult) }
        var summary = summary()
        summary.interrupted = true
        summary.notAnswered = outstanding
        outcome = .success(summary)
        finished = true
        teardown()
        loop.stop()
    }

    func abort(_ error: any Error) {
        guard !finished else { return }
        outcome = .failure(error)
        finished = true
        teardown()
        loop.stop()
    }

    /// Frees every libevent object of the job (idempotent; loop thread).
    func teardown() {
        finished = true
        loop.afterCallback = nil
        control.detach()
        notifier?.cancel()
        notifier = nil
        progressTimer?.cancel()
        progressTimer = nil
        resumeTimer?.cancel()
        resumeTimer = nil
        for c in connections { c.close() }
        for s in servers {
            s.downTimer?.cancel()
            s.downTimer = nil
        }
        dirty.removeAll()
    }
}
