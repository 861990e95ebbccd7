/// Pending work ordered by deadline, grouped by delay so that ordering costs O(1) per item.
///
/// Items that share a delay (the map's `wait` of a request's slowest command) arrive in time order, so their
/// deadlines are already sorted: each delay gets a plain FIFO, and only the FIFO heads are kept in a min-heap.
/// A reactor therefore needs one timer for all its pending requests, re-armed at `nextDeadline`, and inserting
/// or popping an item costs O(1) plus O(log g) for g distinct delays in use, never O(log n) for n items.
public struct DeadlineQueue<Payload> {
    @usableFromInline struct Entry {
        @usableFromInline var deadline: UInt64
        @usableFromInline var payload: Payload
        @inlinable init(deadline: UInt64, payload: Payload) { self.deadline = deadline; self.payload = payload }
    }

    @usableFromInline struct Group {
        @usableFromInline var delay: UInt64
        @usableFromInline var items: [Entry] = []
        @usableFromInline var head = 0
        @inlinable var isEmpty: Bool { head == items.count }
        @inlinable var headDeadline: UInt64 { items[head].deadline }
        @inlinable init(delay: UInt64) { self.delay = delay }
    }

    @usableFromInline var groups: [Group] = []
    @usableFromInline var groupIndexByDelay: [UInt64: Int] = [:]
    /// Indices into `groups` of the non-empty groups, a min-heap on their head deadline.
    @usableFromInline var heap: [Int] = []
    /// The group of the last insert: requests come in runs with one delay, and this skips the dictionary.
    @usableFromInline var lastDelay: UInt64 = 0
    @usableFromInline var lastGroup = -1
    @usableFromInline var storedCount = 0
    public var count: Int { storedCount }

    // The methods are inlinable so that a user in another module (the server's reactor) gets them specialised
    // for its payload: called generically, every insert and pop looked up type metadata at run time.
    @inlinable public init() {}

    @inlinable public var isEmpty: Bool { storedCount == 0 }

    /// The earliest deadline, if anything is pending.
    @inlinable public var nextDeadline: UInt64? {
        guard let top = heap.first else { return nil }
        return groups[top].headDeadline
    }

    /// Adds `payload`, due at `deadline`, which is `now + delay` for a monotonic `now`. Deadlines within one
    /// delay must not go backwards; a deadline earlier than the group's last one is treated as equal to it.
    @inlinable public mutating func insert(deadline: UInt64, delay: UInt64, payload: Payload) {
        let g: Int
        if lastGroup >= 0 && delay == lastDelay {
            g = lastGroup
        } else if let existing = groupIndexByDelay[delay] {
            g = existing
        } else {
            g = groups.count
            groups.append(Group(delay: delay))
            groupIndexByDelay[delay] = g
        }
        lastDelay = delay
        lastGroup = g
        let wasEmpty = groups[g].isEmpty
        var d = deadline
        if !wasEmpty, let last = groups[g].items.last, last.deadline > d { d = last.deadline }
        groups[g].items.append(Entry(deadline: d, payload: payload))
        storedCount += 1
        if wasEmpty { heapPush(g) }
    }

    /// Removes every item due at `now` or earlier, in deadline order (ties in any order), handing each to `body`
    /// with its deadline.
    @inlinable public mutating func popDue(now: UInt64, _ body: (Payload, UInt64) -> Void) {
        while let top = heap.first {
            guard groups[top].headDeadline <= now else { return }
            // Drain this group while it stays the earliest (its head only moves later) and is due, then fix the
            // heap once. Stopping at the next group's head keeps the whole batch in deadline order.
            let bound = min(now, secondSmallestKey())
            repeat {
                let entry = groups[top].items[groups[top].head]
                groups[top].head += 1
                storedCount -= 1
                body(entry.payload, entry.deadline)
            } while !groups[top].isEmpty && groups[top].headDeadline <= bound
            if groups[top].isEmpty {
                releaseEmptied(top)
                heapPopTop()
            } else {
                compact(top)
                siftDown(0)
            }
        }
    }

    /// Removes everything, handing each item to `body` (used when a reactor shuts down hard).
    @inlinable public mutating func removeAll(_ body: (Payload) -> Void) {
        for g in groups.indices {
            for i in groups[g].head..<groups[g].items.count { body(groups[g].items[i].payload) }
            groups[g].items.removeAll()
            groups[g].head = 0
        }
        heap.removeAll()
        storedCount = 0
    }

    /// Removes every item for which `shouldRemove` is true, keeping the others in order; returns how many went.
    /// Visits the items delay by delay, each delay's items in insertion order (callers that keep per-delay state
    /// in step with the queue, such as a byte ring per delay, rely on it). O(n + g log g).
    @discardableResult
    public mutating func removeItems(where shouldRemove: (Payload) -> Bool) -> Int {
        var removed = 0
        for g in groups.indices where !groups[g].isEmpty {
            var kept = 0
            for i in groups[g].head..<groups[g].items.count {
                let entry = groups[g].items[i]
                if shouldRemove(entry.payload) {
                    removed += 1
                } else {
                    groups[g].items[kept] = entry
                    kept += 1
                }
            }
            groups[g].items.removeSubrange(kept...)
            groups[g].head = 0
            if groups[g].isEmpty {
                releaseEmptied(g)
            } else if groups[g].items.capacity > 4096 && groups[g].items.count * 4 < groups[g].items.capacity {
                // Most of a big group went: give the memory back rather than keep the high-water mark.
                var fresh: [Entry] = []
                fresh.reserveCapacity(groups[g].items.count)
                fresh.append(contentsOf: groups[g].items)
                groups[g].items = fresh
            }
        }
        storedCount -= removed
        // Head deadlines moved and groups emptied: rebuild the heap over the non-empty groups.
        heap = groups.indices.filter { !groups[$0].isEmpty }
        if heap.count > 1 {
            for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        }
        return removed
    }

    /// Storage kept by an emptied group: enough for steady traffic when there are few delays. With many
    /// distinct delays (a map with many waits), keeping each group's high-water mark would add up without
    /// bound, so an emptied group then gives its storage back.
    @usableFromInline static var keptEntries: Int { 4096 }
    @usableFromInline static var groupsKeepingStorage: Int { 64 }

    @inlinable mutating func releaseEmptied(_ g: Int) {
        let keep = groups.count <= Self.groupsKeepingStorage && groups[g].items.capacity <= Self.keptEntries
        groups[g].items.removeAll(keepingCapacity: keep)
        groups[g].head = 0
    }

    /// Bytes of storage held for items, used or not (for memory accounting and tests).
    public var storageCapacity: Int {
        groups.reduce(0) { $0 + $1.items.capacity } * MemoryLayout<Entry>.stride
    }

    @inlinable mutating func compact(_ g: Int) {
        // Drop the consumed prefix once it is the larger half, keeping appends amortised O(1).
        if groups[g].head >= 1024 && groups[g].head * 2 >= groups[g].items.count {
            groups[g].items.removeFirst(groups[g].head)
            groups[g].head = 0
        }
    }

    @inlinable func key(_ heapSlot: Int) -> UInt64 { groups[heap[heapSlot]].headDeadline }

    /// The smallest head deadline after the top's: the smaller of the root's children (max when none).
    @inlinable func secondSmallestKey() -> UInt64 {
        let n = heap.count
        if n < 2 { return .max }
        if n == 2 { return key(1) }
        return min(key(1), key(2))
    }

    @inlinable mutating func heapPush(_ g: Int) {
        heap.append(g)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if key(parent) <= key(i) { break }
            heap.swapAt(parent, i)
            i = parent
        }
    }

    @inlinable mutating func heapPopTop() {
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
    }

    @inlinable mutating func siftDown(_ start: Int) {
        var i = start
        let n = heap.count
        while true {
            let l = 2 * i + 1
            if l >= n { return }
            var smallest = l
            let r = l + 1
            if r < n && key(r) < key(l) { smallest = r }
            if key(i) <= key(smallest) { return }
            heap.swapAt(i, smallest)
            i = smallest
        }
    }
}
