import AsyncComCore
import AsyncComEventLoop

/// A command waiting for its result. Kept only when results are delivered per command (a callback, a stream
/// or ordered output); a job that only wants the summary keeps nothing per command but the wire bytes. The
/// command's text is in the request's item bytes: the result is built from them when it is delivered, so a
/// command in flight costs 32 bytes and no String. The item's length and the command's offset in it are packed
/// with the line number, so that delivering does not scan the bytes again.
struct PendingCommand {
    var sequence: Int
    /// line << 16 | item length << 8 | command start (an item is at most 106 bytes; a line number below 2^47).
    private var packed: UInt64
    var device: DeviceAddress

    @inline(__always)
    init(sequence: Int, line: Int, device: DeviceAddress, itemLength: Int, commandStart: Int) {
        precondition(itemLength <= 255 && commandStart <= itemLength && line >= 0 && line < 1 << 47, "command out of range")
        self.sequence = sequence
        self.packed = UInt64(line) << 16 | UInt64(itemLength) << 8 | UInt64(commandStart)
        self.device = device
    }

    @inline(__always) var line: Int { Int(packed >> 16) }
    @inline(__always) var itemLength: Int { Int((packed >> 8) & 0xFF) }
    @inline(__always) var commandStart: Int { Int(packed & 0xFF) }
}

/// One request: a batch of items for one server, with a unique id kept across re-sends.
struct Request {
    var id: UInt64
    /// The items as `ClientProtocol.appendItem` encodes them (` a:b c:d`): encoded once, re-sent as they are.
    /// In the table's `ItemSlab`, until the request is removed and its storage released (`releaseStorage`).
    var items: ItemBlock
    var itemCount: Int
    /// Empty unless per-command results are wanted; else `commands[i]` is item `i`.
    var commands: [PendingCommand]
    /// The source's own entries, for sources that hand out `CommandEntry` values (else empty: see
    /// `PendingCommand`); `entries[i]` is item `i`.
    var entries: [CommandEntry] = []
    /// The server whose queue (or connection) holds the request; failures are counted against it.
    var server: Int
    /// Index of the connection it is in flight on, or -1 while queued.
    var connection: Int
    /// Bumped on every send, so timeout entries of earlier sends are recognised as stale.
    var epoch: UInt32 = 0
    /// Sends that ended in a timeout.
    var timeouts: Int = 0
    /// Sends that ended with their connection lost.
    var losses: Int = 0
    /// CLOCK_MONOTONIC of the first send (0: never sent); latency is measured from it.
    var firstSentNanos: UInt64 = 0
}

/// Requests not yet answered, by id: a slab of slots plus an id index. Ids come from a 64-bit counter, so an id
/// is never reused and a late reply to a finished request finds nothing.
///
/// A class, not a struct: the engine keeps it in a stored property, and calling a method of a struct held by a
/// class copies the struct first (retaining every array in it) on each call, for every reply.
/// Loop thread only (unchecked exclusivity, for the reason given on `Engine`).
final class RequestTable {
    /// The item bytes of the requests in the table, and of removed ones until `releaseStorage`.
    let slab: ItemSlab
    @exclusivity(unchecked) private var slots: [Request?] = []
    /// Where each slot's request keeps its item bytes and commands, for `prefetch`: plain pointers, so that
    /// hinting the next request costs no copy of it (a `Request` copy retains its buffers).
    @exclusivity(unchecked) private var hints: [PrefetchHint] = []

    private struct PrefetchHint {
        var items: UnsafeRawPointer?
        var itemBytes: Int32
        var commandBytes: Int32
        var commands: UnsafeRawPointer?
    }
    @exclusivity(unchecked) private var freeSlots: [Int32] = []
    @exclusivity(unchecked) private var slotByID = IDIndex()
    @exclusivity(unchecked) private(set) var nextID: UInt64 = 1
    @exclusivity(unchecked) private(set) var count = 0

    init(slab: ItemSlab = ItemSlab()) {
        self.slab = slab
    }

    /// Requests still in the table when the job ends (interrupted, aborted) give their item bytes back.
    deinit {
        for case let request? in slots { slab.release(request.items) }
    }

    /// Creates a request with a fresh id, its items a copy of `items`, and returns its slot.
    func insert(items: UnsafeRawBufferPointer, itemCount: Int, commands: [PendingCommand], server: Int) -> Int {
        let id = nextID
        nextID &+= 1
        let block = slab.store(items)
        let request = Request(id: id, items: block, itemCount: itemCount, commands: commands, server: server, connection: -1)
        // The bytes are not written while the request lives (re-sends send the same bytes), so the pointers
        // stay valid; a stale one would only make a prefetch useless, never a fault.
        let hint = PrefetchHint(
            items: UnsafeRawPointer(block.base), itemBytes: Int32(clamping: block.count),
            commandBytes: Int32(clamping: commands.count * MemoryLayout<PendingCommand>.stride),
            commands: commands.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) })
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = Int(free)
            slots[slot] = request
            hints[slot] = hint
        } else {
            slot = slots.count
            slots.append(request)
            hints.append(hint)
        }
        slotByID.insert(id, slot: Int32(slot))
        count += 1
        return slot
    }

    @inline(__always) func slot(forID id: UInt64) -> Int? {
        guard let s = slotByID.find(id) else { return nil }
        return Int(s)
    }

    /// Whether `slot` holds the live request `id` (timeout entries carry both).
    @inline(__always) func isLive(slot: Int, id: UInt64) -> Bool {
        slot < slots.count && slots[slot]?.id == id
    }

    subscript(slot: Int) -> Request {
        // Borrowed, not copied: reading one field must not retain and release the request's buffers.
        _read { yield slots[slot]! }
        _modify { yield &slots[slot]! }
    }

    /// Starts loading the cache lines a reply to `id` will read: the request's item bytes and its commands.
    /// (For the request answered next: it was sent long ago, and everything it points to has gone cold.)
    func prefetch(id: UInt64) {
        guard let s = slotByID.find(id) else { return }
        let hint = hints[Int(s)]
        if let items = hint.items {
            var offset = 0
            while offset < Int(hint.itemBytes) {
                Prefetch.read(items + offset)
                offset += 64
            }
        }
        if let commands = hint.commands {
            var offset = 0
            while offset < Int(hint.commandBytes) {
                Prefetch.read(commands + offset)
                offset += 64
            }
        }
    }

    /// Takes the request out of the table. Its item bytes stay valid (for delivering its results, or splitting
    /// it) until `releaseStorage(of:)`, which every caller must call once it is done with them.
    func remove(slot: Int) -> Request {
        let request = slots[slot].take()!
        slotByID.remove(request.id)
        freeSlots.append(Int32(slot))
        count -= 1
        return request
    }

    /// Gives the item bytes of a removed request back to the slab.
    @inline(__always) func releaseStorage(of request: Request) {
        slab.release(request.items)
    }

    /// Live slots (teardown and tests).
    var liveSlots: [Int] { slots.indices.filter { slots[$0] != nil } }
}

/// Request ids to slots: a direct-mapped array indexed by the id's low bits, kept at least twice as large as
/// the number of ids in it, plus a dictionary for the rare id whose cell is taken.
///
/// Ids come from a counter, so the ids in flight are mostly one run of consecutive numbers: each has its own
/// cell, and neighbouring lookups touch neighbouring cache lines. Only an id older than the array's size that
/// is still in flight (a slow request) can share a cell with a new one; the new one then goes to `overflow`.
/// (`Dictionary` alone cost a seeded SipHash and a cache miss per insert, remove and reply; linear probing
/// on the low bits degenerated, since consecutive ids form one long probe run.)
struct IDIndex {
    /// 0 marks an empty cell (ids start at 1).
    private var keys: [UInt64]
    private var values: [Int32]
    private var mask: Int
    private var overflow: [UInt64: Int32] = [:]
    private(set) var count = 0

    init() {
        keys = [UInt64](repeating: 0, count: 64)
        values = [Int32](repeating: 0, count: 64)
        mask = 63
    }

    @inline(__always) func find(_ id: UInt64) -> Int32? {
        let i = Int(truncatingIfNeeded: id) & mask
        if keys[i] == id { return values[i] }
        return overflow.isEmpty ? nil : overflow[id]
    }

    /// Adds `id`, which must be non-zero and absent.
    mutating func insert(_ id: UInt64, slot: Int32) {
        if (count + 1) * 2 > keys.count { grow() }
        place(id, slot)
        count += 1
    }

    @inline(__always) private mutating func place(_ id: UInt64, _ slot: Int32) {
        let i = Int(truncatingIfNeeded: id) & mask
        if keys[i] == 0 {
            keys[i] = id
            values[i] = slot
        } else {
            overflow[id] = slot
        }
    }

    mutating func remove(_ id: UInt64) {
        let i = Int(truncatingIfNeeded: id) & mask
        if keys[i] == id {
            keys[i] = 0
        } else if overflow.isEmpty || overflow.removeValue(forKey: id) == nil {
            return
        }
        count -= 1
    }

    private mutating func grow() {
        let oldKeys = keys
        let oldValues = values
        let oldOverflow = overflow
        let size = keys.count * 2
        keys = [UInt64](repeating: 0, count: size)
        values = [Int32](repeating: 0, count: size)
        mask = size - 1
        overflow = [:]
        for i in 0..<oldKeys.count where oldKeys[i] != 0 { place(oldKeys[i], oldValues[i]) }
        for (id, slot) in oldOverflow { place(id, slot) }
    }
}

/// Encoding and splitting of item lists.
enum ItemsCodec {
    /// Bytes of `REQ <id>` + items + LF beyond the items themselves (an id has at most 20 digits).
    static let requestOverhead = 4 + 20 + 1

    @inline(__always) static func append(item: String, to buffer: ByteBuffer) {
        var s = item
        s.withUTF8 { ClientProtocol.appendItem(UnsafeRawBufferPointer($0), to: buffer) }
    }

    /// The items of an encoded list, as byte ranges into it (they are separated by spaces, which no item
    /// contains).
    static func ranges(of view: UnsafeRawBufferPointer) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var i = 0
        while i < view.count {
            while i < view.count && view[i] == UInt8(ascii: " ") { i += 1 }
            let start = i
            while i < view.count && view[i] != UInt8(ascii: " ") { i += 1 }
            if i > start { result.append(start..<i) }
        }
        return result
    }

    /// Splits an encoded item list into chunks of at most `maxItems` items whose request line fits
    /// `maxLine` bytes (a chunk always holds at least one item). Returns each chunk's items and the range of
    /// item indices it covers.
    static func split(_ view: UnsafeRawBufferPointer, maxItems: Int, maxLine: Int) -> [(items: ByteBuffer, indices: Range<Int>)] {
        let ranges = ranges(of: view)
        var chunks: [(items: ByteBuffer, indices: Range<Int>)] = []
        var start = 0
        while start < ranges.count {
            let buffer = ByteBuffer(capacity: 256)
            var end = start
            var bytes = requestOverhead
            while end < ranges.count && end - start < max(1, maxItems) {
                let r = ranges[end]
                let cost = r.count + 1
                if end > start && bytes + cost > maxLine { break }
                ClientProtocol.appendItem(UnsafeRawBufferPointer(rebasing: view[r]), to: buffer)
                bytes += cost
                end += 1
            }
            chunks.append((buffer, start..<end))
            start = end
        }
        return chunks
    }
}
