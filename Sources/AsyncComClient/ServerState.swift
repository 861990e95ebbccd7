import AsyncComCore
import DequeModule
import AsyncComEventLoop

/// One configured server: its connections, its queue of requests waiting for a window slot, the batch being
/// filled for it, and whether it is up. Loop thread only (hot properties skip the runtime exclusivity checks,
/// for the reason given on `Engine`).
final class ServerState {
    let index: Int
    let endpoint: Endpoint
    var connections: [ClientConnection] = []
    /// Requests waiting to be sent, oldest first; re-sends go to the front. An entry names its request by slot
    /// and id, so one answered meanwhile (a late reply to an earlier send) is recognised and skipped.
    @exclusivity(unchecked) var queue = Deque<QueuedRequest>()
    /// The items of the batch being filled (empty until its first command); one buffer for every batch, copied
    /// into the request table's `ItemSlab` when the batch becomes a request. (Unchecked exclusivity: touched per
    /// command, loop thread only.)
    let partialItems: ByteBuffer
    @exclusivity(unchecked) private(set) var partialCount = 0
    @exclusivity(unchecked) private(set) var partialCommands: [PendingCommand] = []
    /// The source's own entries, for sources that hand out `CommandEntry` values (see `Request.entries`).
    @exclusivity(unchecked) private(set) var partialEntries: [CommandEntry] = []
    /// Commands per request, clamped to the server's `max_items` once a HELLO reply says it (`DepthPolicy`).
    @exclusivity(unchecked) var batch: Int
    /// Up, coming back or down (see `ServerHealth`). A down server's requests fail over to the other servers; it
    /// keeps being probed and comes back when it answers.
    @exclusivity(unchecked) var health: ServerHealth
    /// How many connections it gets (see `ConnectionPlan`).
    @exclusivity(unchecked) var plan: ConnectionPlan
    /// The endpoint's addresses, resolved once per job (nil until resolved).
    var resolved: Socket.ResolvedAddresses?
    /// The limits of its last HELLO.
    var limits = ServerLimits()
    var lastError = "no connection attempt yet"
    /// Failed connect attempts are logged at debug level only: the first one has been logged as a warning, or
    /// the server has been up (from then on "connection lost" and "server is down" say what matters).
    var quietConnectFailures = false
    /// Fires at `health.downDeadline`.
    var downTimer: EventTimer?
    /// Where the next pump starts, so connections share the queue.
    @exclusivity(unchecked) var nextConnection = 0

    init(index: Int, endpoint: Endpoint, batch: Int, health: ServerHealth, plan: ConnectionPlan) {
        self.index = index
        self.endpoint = endpoint
        self.batch = batch
        self.health = health
        self.plan = plan
        self.partialItems = ByteBuffer(capacity: max(64, min(batch, 1024) * 24))
    }

    @inline(__always) var isUp: Bool { health.readyCount > 0 }
    @inline(__always) var isDown: Bool { health.isDown }

    var hasBatch: Bool { partialCount > 0 }

    /// Starts a batch; per-command state goes to `commands` (empty).
    func startBatch(commands: [PendingCommand]) {
        partialCommands = commands
    }

    /// Adds a command to the batch being filled (started with `startBatch`); returns the batch size so far.
    @inline(__always) func addToBatch(item: UnsafeRawBufferPointer, command: PendingCommand?, entry: CommandEntry?) -> Int {
        // `partialItems` owns the buffer for the whole call: no need to retain and release it per command.
        Unmanaged.passUnretained(partialItems)._withUnsafeGuaranteedRef { ClientProtocol.appendItem(item, to: $0) }
        if let command { partialCommands.append(command) }
        if let entry { partialEntries.append(entry) }
        partialCount += 1
        return partialCount
    }

    /// Hands the batch over, if it has commands; the next command starts a new one. `items` stays valid until
    /// the next `addToBatch` (the buffer is emptied, not freed): copy it before.
    func takeBatch() -> (items: UnsafeRawBufferPointer, count: Int, commands: [PendingCommand], entries: [CommandEntry])? {
        guard partialCount > 0 else { return nil }
        let batch = (partialItems.readableView, partialCount, partialCommands, partialEntries)
        partialItems.clear()
        partialCount = 0
        partialCommands = []
        partialEntries = []
        return batch
    }

    var inFlight: Int {
        var n = 0
        for c in connections { n += c.inFlight }
        return n
    }

    var unreachableReason: String { "server unreachable (\(endpoint): \(lastError))" }
}

struct QueuedRequest {
    var slot: Int32
    var id: UInt64
}
