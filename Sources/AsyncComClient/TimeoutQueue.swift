import DequeModule

/// A request sent on a connection and when it is due.
struct TimeoutEntry: Equatable {
    var deadline: UInt64
    var slot: Int32
    var epoch: UInt32
    var id: UInt64
}

/// The requests sent on one connection, in send order. The request timeout is the same for every request, so
/// send order is deadline order: a FIFO replaces a heap, and one timer armed at the oldest live deadline serves
/// the whole connection. Answered requests are not removed eagerly; they are skipped when they reach the front
/// (and the queue is compacted when stale entries pile up behind a slow request).
struct TimeoutQueue {
    private(set) var fifo = Deque<TimeoutEntry>()

    var count: Int { fifo.count }

    /// The front entry's deadline: never later than the earliest live one (entries are pushed in deadline order;
    /// the front may be an answered request's, which only makes a timer look early).
    var firstDeadline: UInt64? { fifo.first?.deadline }

    mutating func push(_ entry: TimeoutEntry) { fifo.append(entry) }

    /// Drops stale entries at the front; returns the deadline of the first live one.
    mutating func trimFront(isLive: (TimeoutEntry) -> Bool) -> UInt64? {
        while let head = fifo.first {
            if isLive(head) { return head.deadline }
            _ = fifo.popFirst()
        }
        return nil
    }

    /// Removes the live entries due at `now` (in send order) and the stale ones before the first live entry
    /// that is not due yet, whose deadline is returned.
    mutating func popExpired(now: UInt64, isLive: (TimeoutEntry) -> Bool) -> (expired: [TimeoutEntry], next: UInt64?) {
        var expired: [TimeoutEntry] = []
        while let head = fifo.first {
            if !isLive(head) {
                _ = fifo.popFirst()
            } else if head.deadline <= now {
                expired.append(head)
                _ = fifo.popFirst()
            } else {
                return (expired, head.deadline)
            }
        }
        return (expired, nil)
    }

    /// Rebuilds the FIFO without stale entries when they outnumber `liveCount` by far (amortised O(1)).
    mutating func compactIfNeeded(liveCount: Int, isLive: (TimeoutEntry) -> Bool) {
        guard fifo.count > 4 * liveCount + 1024 else { return }
        var fresh = Deque<TimeoutEntry>()
        for i in 0..<fifo.count where isLive(fifo[i]) { fresh.append(fifo[i]) }
        fifo = fresh
    }

    /// Empties the queue, returning the live entries in send order (a lost connection's requests).
    mutating func drainLive(isLive: (TimeoutEntry) -> Bool) -> [TimeoutEntry] {
        var live: [TimeoutEntry] = []
        while let e = fifo.popFirst() {
            if isLive(e) { live.append(e) }
        }
        fifo.removeAll()
        return live
    }
}
