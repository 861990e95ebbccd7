import AsyncComCore

#if canImport(Glibc)
import Glibc
#endif

/// Where a pending reply goes: its connection's slot and generation (a closed connection's replies become stale
/// and are skipped when due), where its text is (a byte ring, or with `overflowFlag` a `TextSlab` handle), and
/// how many commands it answers.
struct PendingRef {
    var slot: UInt32
    var generation: UInt32
    var ring: UInt32
    var commands: UInt32

    static let overflowFlag: UInt32 = 1 << 31
}

/// Every reply of one reactor that is not due yet, in about 24 bytes of bookkeeping plus the reply text.
///
/// The `DeadlineQueue` keeps one FIFO per delay (for up to `DeadlineQueue.maxGroups` delays at a time); the
/// reply texts of one group are kept in the same order in one byte ring (a `ByteBuffer` used as a FIFO), so
/// popping an entry pops exactly the next line of its ring. No per-reply allocation, no per-reply object:
/// 1,000,000 pending one-command replies cost tens of MiB. A reply whose delay has no group (a map with many
/// distinct waits) goes to the queue's overflow heap, which pops in deadline order rather than insertion order,
/// so its text is kept in a `TextSlab` instead.
///
/// A closed connection's replies become stale. They are skipped when due, but a peer must not be able to pin
/// memory by queueing long waits and hanging up, so stale replies are also reclaimed in bulk: once they are
/// more than half of what is stored (and worth the walk), `reclaim` filters the queue and compacts the rings in
/// one pass. Each pass removes at least as much as it keeps, so its cost is amortised O(1) per stale reply, and
/// stale memory never exceeds the live memory plus `reclaimFloor`.
final class PendingReplies {
    private var queue = DeadlineQueue<PendingRef>()
    /// `rings[g]` holds the texts of the queue's group `g`.
    private var rings: [ByteBuffer] = []
    /// Texts of overflow replies, by the handle in their `PendingRef.ring`.
    private let overflowTexts = TextSlab()
    /// Reply bytes stored (rings and overflow texts), stale ones included.
    private(set) var storedBytes = 0
    /// Replies of closed connections still stored, and their bytes.
    private(set) var staleCount = 0
    private(set) var staleBytes = 0
    private(set) var isPopping = false

    /// A ring keeps up to this much capacity when it empties, so steady traffic does not reallocate (there are
    /// at most `DeadlineQueue.maxGroups` rings).
    private static let ringKeep = 64 * 1024
    /// Approximate bookkeeping bytes per queued reply (deadline + `PendingRef`), for the reclaim trigger.
    private static let entryCost = 24
    /// Stale memory below this is left to expire on its own: not worth a pass over everything.
    static let reclaimFloor = 256 * 1024

    var count: Int { queue.count }
    var nextDeadline: UInt64? { queue.nextDeadline }

    /// Queues `line` (one complete reply line, LF included) for `slot`/`generation`, due at `deadline`.
    func insert(line: UnsafeRawBufferPointer, deadline: UInt64, delay: UInt64,
                slot: UInt32, generation: UInt32, commands: Int) {
        let group = queue.group(forDelay: delay)
        let ring: UInt32
        if let group {
            while rings.count <= group { rings.append(ByteBuffer(capacity: 256)) }
            rings[group].append(line)
            ring = UInt32(group)
        } else {
            ring = PendingRef.overflowFlag | overflowTexts.store(line)
        }
        storedBytes += line.count
        queue.insert(deadline: deadline, group: group,
                     payload: PendingRef(slot: slot, generation: generation, ring: ring, commands: UInt32(commands)))
    }

    /// Removes every reply due at `now` or earlier, in deadline order, handing each to `body` with its deadline
    /// and its line (valid only during the call). `body` returns false for a stale reply it dropped.
    func popDue(now: UInt64, _ body: (PendingRef, UInt64, UnsafeRawBufferPointer) -> Bool) {
        isPopping = true
        defer { isPopping = false }
        queue.popDue(now: now) { ref, deadline in
            let overflow = ref.ring & PendingRef.overflowFlag != 0
            let ring = overflow ? nil : rings[Int(ref.ring)]
            let text = ring.map { UnsafeRawBufferPointer(start: $0.readPointer, count: Self.lineLength($0, at: 0)) }
                ?? overflowTexts.text(ref.ring & ~PendingRef.overflowFlag)
            if !body(ref, deadline, text) {
                staleCount -= 1
                staleBytes -= text.count
            }
            storedBytes -= text.count
            if let ring {
                ring.consume(text.count)
                if ring.isEmpty { ring.shrinkIfEmpty(limit: Self.ringKeep) }
            } else {
                overflowTexts.release(ref.ring & ~PendingRef.overflowFlag)
            }
        }
    }

    /// Records that a connection closed with `replies` replies of `bytes` bytes still queued: they are stale now.
    func abandon(replies: Int, bytes: Int) {
        staleCount += replies
        staleBytes += bytes
    }

    /// Whether stale replies hold more than half of the stored memory and more than `reclaimFloor`.
    var shouldReclaim: Bool {
        let stale = staleBytes + staleCount * Self.entryCost
        let stored = storedBytes + queue.count * Self.entryCost
        return stale >= Self.reclaimFloor && stale * 2 > stored && !isPopping
    }

    /// Drops every reply for which `isLive` is false, keeping the others in order, and gives the memory back.
    func reclaim(isLive: (PendingRef) -> Bool) {
        precondition(!isPopping, "reclaim during popDue")
        // Per ring: where the next line to look at starts, and where the next kept line goes. Kept lines only
        // move towards the front, so compacting in place is safe.
        var read = [Int](repeating: 0, count: rings.count)
        var write = [Int](repeating: 0, count: rings.count)
        var overflowBytes = 0
        queue.removeItems { ref in
            if ref.ring & PendingRef.overflowFlag != 0 {
                let handle = ref.ring & ~PendingRef.overflowFlag
                guard isLive(ref) else {
                    overflowTexts.release(handle)
                    return true
                }
                overflowBytes += overflowTexts.text(handle).count
                return false
            }
            let r = Int(ref.ring)
            let ring = rings[r]
            let start = read[r]
            let length = Self.lineLength(ring, at: start)
            read[r] = start + length
            guard isLive(ref) else { return true }
            if write[r] != start { memmove(ring.readPointer + write[r], ring.readPointer + start, length) }
            write[r] += length
            return false
        }
        storedBytes = overflowBytes
        for r in rings.indices {
            let ring = rings[r]
            precondition(read[r] == ring.readableBytes, "pending reply ring out of step with its deadline queue")
            ring.truncate(readableBytes: write[r])
            storedBytes += write[r]
            if ring.isEmpty {
                ring.shrinkIfEmpty(limit: Self.ringKeep)
            } else if ring.capacity > Self.ringKeep && ring.capacity > 4 * ring.readableBytes {
                let smaller = ByteBuffer(capacity: 2 * ring.readableBytes)
                smaller.append(ring.readableView)
                rings[r] = smaller
            }
        }
        staleCount = 0
        staleBytes = 0
    }

    /// The length, LF included, of the line starting `offset` bytes into `ring`'s readable bytes.
    @inline(__always) private static func lineLength(_ ring: ByteBuffer, at offset: Int) -> Int {
        let start = ring.readPointer + offset
        // Each ring holds whole lines in queue order: the next line ends at the first LF.
        guard let lf = memchr(start, 0x0A, ring.readableBytes - offset) else {
            preconditionFailure("pending reply ring out of step with its deadline queue")
        }
        return UnsafeRawPointer(start).distance(to: UnsafeRawPointer(lf)) + 1
    }
}
