import HeapModule

/// Pending work ordered by deadline, grouped by delay so that ordering costs O(1) per item.
///
/// Items that share a delay (the map's `wait` of a request's slowest command) arrive in time order, so their
/// deadlines are already sorted: each delay gets a plain FIFO, and only the FIFO heads are kept in a min-heap
/// (swift-collections' `Heap`).
/// A reactor therefore needs one timer for all its pending requests, re-armed at `nextDeadline`, and inserting
/// or popping an item costs O(1) plus O(log g) for g distinct delays in use, never O(log n) for n items.
///
/// A map may have thousands of distinct waits, though, and a FIFO per delay would then cost an allocation per
/// item. So at most `maxGroups` delays have a FIFO at a time (an emptied one is taken over by the next new
/// delay); items of any other delay go to one 4-ary min-heap (`overflow`), O(log n) each: four children share
/// a cache line or two, so a sift touches half the lines a binary heap would.
///
/// Measured (issue 16, release build, 2,000,000 items at 1 µs spacing, a pop every 16 inserts, median of 5
/// interleaved runs at load 3.3; instructions from callgrind, which load does not change): the group heap as
/// swift-collections' `Heap` costs what the hand-written binary heap did (1 delay 48 vs 49 ns/item, 8 delays
/// 51 vs 57, 64 delays 65 vs 61; 249 vs 251, 258 vs 260, 398 vs 421 instructions/item), so the library serves.
/// The overflow heap stays 4-ary: with 1,000 delays (about 500,000 items in it) `Heap` ran fewer instructions
/// (916 vs 1,195 per item) but took longer (355 vs 334 ns/item): its min-max layout touches more cache lines.
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
        /// Whether the group's index is in `idleGroups` (listed once however often it empties).
        @usableFromInline var listedIdle = false
        @inlinable var isEmpty: Bool { head == items.count }
        @inlinable var headDeadline: UInt64 { items[head].deadline }
        @inlinable init(delay: UInt64) { self.delay = delay }
    }

    /// A non-empty group in the heap, keyed by its head deadline (updated by taking it out and putting it back).
    @usableFromInline struct GroupHead: Comparable {
        @usableFromInline var deadline: UInt64
        @usableFromInline var group: Int
        @inlinable init(deadline: UInt64, group: Int) { self.deadline = deadline; self.group = group }
        @inlinable static func < (a: GroupHead, b: GroupHead) -> Bool {
            a.deadline < b.deadline || (a.deadline == b.deadline && a.group < b.group)
        }
    }

    @usableFromInline var groups: [Group] = []
    @usableFromInline var groupIndexByDelay: [UInt64: Int] = [:]
    /// The non-empty groups by head deadline.
    @usableFromInline var heap = Heap<GroupHead>()
    /// The group of the last insert: requests come in runs with one delay, and this skips the dictionary.
    @usableFromInline var lastDelay: UInt64 = 0
    @usableFromInline var lastGroup = -1
    @usableFromInline var storedCount = 0
    /// Items whose delay has no group, a min-heap on their deadline.
    @usableFromInline var overflow: [Entry] = []
    /// Groups that are empty, so a new delay can take one over (may hold stale indices: checked on use).
    @usableFromInline var idleGroups: [Int] = []
    public var count: Int { storedCount }

    /// Delays that have their own FIFO at a time.
    public static var maxGroups: Int { 64 }

    // The methods are inlinable so that a user in another module (the server's reactor) gets them specialised
    // for its payload: called generically, every insert and pop looked up type metadata at run time.
    @inlinable public init() {}

    @inlinable public var isEmpty: Bool { storedCount == 0 }

    /// The earliest deadline, if anything is pending.
    @inlinable public var nextDeadline: UInt64? {
        let fromGroups = heap.min?.deadline
        guard let top = overflow.first else { return fromGroups }
        return min(top.deadline, fromGroups ?? .max)
    }

    /// Adds `payload`, due at `deadline`, which is `now + delay` for a monotonic `now`. Deadlines within one
    /// delay must not go backwards; a deadline earlier than the group's last one is treated as equal to it.
    @inlinable public mutating func insert(deadline: UInt64, delay: UInt64, payload: Payload) {
        insert(deadline: deadline, group: group(forDelay: delay), payload: payload)
    }

    /// The FIFO group for `delay`, set up if there is room (a new group, or an emptied one taken over); nil
    /// when every group is busy with other delays: such items go to the overflow heap. A caller that keeps
    /// per-group state (a byte ring per group) keys it by this index and inserts with `insert(deadline:group:)`.
    @inlinable public mutating func group(forDelay delay: UInt64) -> Int? {
        if lastGroup >= 0 && delay == lastDelay { return lastGroup }
        let g: Int
        if let existing = groupIndexByDelay[delay] {
            g = existing
        } else if groups.count < Self.maxGroups {
            g = groups.count
            groups.append(Group(delay: delay))
            groupIndexByDelay[delay] = g
        } else if let idle = takeIdleGroup() {
            groupIndexByDelay[groups[idle].delay] = nil
            groups[idle].delay = delay
            groupIndexByDelay[delay] = idle
            g = idle
        } else {
            return nil
        }
        lastDelay = delay
        lastGroup = g
        return g
    }

    @inlinable mutating func takeIdleGroup() -> Int? {
        while let g = idleGroups.popLast() {
            groups[g].listedIdle = false
            if groups[g].isEmpty { return g }
        }
        return nil
    }

    /// Adds `payload` to `group` (from `group(forDelay:)`, nothing inserted since), or to the overflow heap.
    @inlinable public mutating func insert(deadline: UInt64, group: Int?, payload: Payload) {
        guard let g = group else {
            overflow.append(Entry(deadline: deadline, payload: payload))
            storedCount += 1
            overflowSiftUp(overflow.count - 1)
            return
        }
        let wasEmpty = groups[g].isEmpty
        var d = deadline
        if !wasEmpty, let last = groups[g].items.last, last.deadline > d { d = last.deadline }
        groups[g].items.append(Entry(deadline: d, payload: payload))
        storedCount += 1
        if wasEmpty { heap.insert(GroupHead(deadline: d, group: g)) }
    }

    /// Removes every item due at `now` or earlier, in deadline order (ties in any order), handing each to `body`
    /// with its deadline.
    @inlinable public mutating func popDue(now: UInt64, _ body: (Payload, UInt64) -> Void) {
        while true {
            let overflowHead = overflow.first?.deadline ?? .max
            guard let head = heap.min, head.deadline <= overflowHead else {
                // The overflow heap holds the earliest item (or there are no groups).
                guard !overflow.isEmpty && overflowHead <= now else { return }
                let entry = overflowPopTop()
                storedCount -= 1
                body(entry.payload, entry.deadline)
                continue
            }
            guard head.deadline <= now else { return }
            // Drain this group while it stays the earliest (its head only moves later) and is due, then put it
            // back once. Stopping at the next group's (or overflow's) head keeps the batch in deadline order.
            heap.removeMin()
            let top = head.group
            let bound = min(now, heap.min?.deadline ?? .max, overflowHead)
            repeat {
                let entry = groups[top].items[groups[top].head]
                groups[top].head += 1
                storedCount -= 1
                body(entry.payload, entry.deadline)
            } while !groups[top].isEmpty && groups[top].headDeadline <= bound
            if groups[top].isEmpty {
                releaseEmptied(top)
            } else {
                compact(top)
                heap.insert(GroupHead(deadline: groups[top].headDeadline, group: top))
            }
        }
    }

    /// Removes every item for which `shouldRemove` is true, keeping the others in order; returns how many went.
    /// Visits the items group by group, each group's items in insertion order (callers that keep per-group
    /// state in step with the queue, such as a byte ring per group, rely on it), then the overflow heap's items
    /// in no particular order. O(n + g log g).
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
        var kept = 0
        for i in overflow.indices {
            if shouldRemove(overflow[i].payload) {
                removed += 1
            } else {
                overflow[kept] = overflow[i]
                kept += 1
            }
        }
        overflow.removeSubrange(kept...)
        if overflow.capacity > 4096 && overflow.count * 4 < overflow.capacity { overflow = Array(overflow) }
        if overflow.count > 1 {
            for i in stride(from: (overflow.count - 2) / 4, through: 0, by: -1) { overflowSiftDown(i) }
        }
        storedCount -= removed
        // Head deadlines moved and groups emptied: rebuild the heap over the non-empty groups.
        heap = Heap(groups.indices.filter { !groups[$0].isEmpty }.map { GroupHead(deadline: groups[$0].headDeadline, group: $0) })
        return removed
    }

    /// Storage kept by an emptied group, so steady traffic does not reallocate; a bigger one is given back.
    /// There are at most `maxGroups` groups, so what is kept is bounded whatever the waits.
    @usableFromInline static var keptEntries: Int { 1024 }

    @inlinable mutating func releaseEmptied(_ g: Int) {
        groups[g].items.removeAll(keepingCapacity: groups[g].items.capacity <= Self.keptEntries)
        groups[g].head = 0
        if !groups[g].listedIdle {
            groups[g].listedIdle = true
            idleGroups.append(g)
        }
    }

    /// Bytes of storage held for items, used or not (for memory accounting and tests).
    public var storageCapacity: Int {
        (groups.reduce(0) { $0 + $1.items.capacity } + overflow.capacity) * MemoryLayout<Entry>.stride
    }

    // MARK: the overflow heap

    @inlinable mutating func overflowPopTop() -> Entry {
        let top = overflow[0]
        let last = overflow.removeLast()
        if !overflow.isEmpty {
            overflow[0] = last
            overflowSiftDown(0)
        } else if overflow.capacity > 4096 {
            overflow = []
        }
        return top
    }

    @inlinable mutating func overflowSiftUp(_ start: Int) {
        var i = start
        let entry = overflow[i]
        while i > 0 {
            let parent = (i - 1) / 4
            if overflow[parent].deadline <= entry.deadline { break }
            overflow[i] = overflow[parent]
            i = parent
        }
        overflow[i] = entry
    }

    @inlinable mutating func overflowSiftDown(_ start: Int) {
        var i = start
        let n = overflow.count
        let entry = overflow[i]
        while true {
            let first = 4 * i + 1
            if first >= n { break }
            var child = first
            var k = first + 1
            let last = min(first + 4, n)
            while k < last {
                if overflow[k].deadline < overflow[child].deadline { child = k }
                k += 1
            }
            if entry.deadline <= overflow[child].deadline { break }
            overflow[i] = overflow[child]
            i = child
        }
        overflow[i] = entry
    }

    @inlinable mutating func compact(_ g: Int) {
        // Drop the consumed prefix once it is the larger half, keeping appends amortised O(1).
        if groups[g].head >= 1024 && groups[g].head * 2 >= groups[g].items.count {
            groups[g].items.removeFirst(groups[g].head)
            groups[g].head = 0
        }
    }
}
