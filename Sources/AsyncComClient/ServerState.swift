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
    /// The batch being filled, nil until its first command. (Unchecked exclusivity: touched per command, loop
    /// thread only.)
    @exclusivity(unchecked) private(set) var partialItems: ByteBuffer?
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
    var plan: ConnectionPlan
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
    }

    @inline(__always) var isUp: Bool { health.readyCount > 0 }
    @inline(__always) var isDown: Bool { health.isDown }

    /// A buffer for a batch's items when no spare one is at hand.
    func makeItemsBuffer() -> ByteBuffer {
        ByteBuffer(capacity: max(64, min(batch, 1024) * 24))
    }

    var hasBatch: Bool { partialItems != nil }

    /// Starts a batch in `items` (an empty buffer); per-command state goes to `commands` (empty).
    func startBatch(items: ByteBuffer, commands: [PendingCommand]) {
        partialItems = items
        partialCommands = commands
    }

    /// Adds a command to the batch being filled (started with `startBatch`); returns the batch size so far.
    @inline(__always) func addToBatch(item: UnsafeRawBufferPointer, command: PendingCommand?, entry: CommandEntry?) -> Int {
        // `partialItems` owns the buffer for the whole call: no need to retain and release it per command.
        Unmanaged.passUnretained(partialItems!)._withUnsafeGuaranteedRef { ClientProtocol.appendItem(item, to: $0) }
        if let command { partialCommands.append(command) }
        if let entry { partialEntries.append(entry) }
        partialCount += 1
        return partialCount
    }

    /// Hands the batch over, if it has commands; the next command starts a new one.
    func takeBatch() -> (items: ByteBuffer, count: Int, commands: [PendingCommand], entries: [CommandEntry])? {
        guard let items = partialItems, partialCount > 0 else { return nil }
        let batch = (items, partialCount, partialCommands, partialEntries)
        partialItems = nil
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
