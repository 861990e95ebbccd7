import AsyncComCore

#if canImport(Glibc)
import Glibc
#endif

/// Where a pending reply goes: its connection's slot and generation (a closed connection's replies become stale
/// and are skipped when due), the byte ring holding its text, and how many commands it answers.
struct PendingRef {
    var slot: UInt32
    var generation: UInt32
    var ring: UInt32
    var commands: UInt32
}

/// Every reply of one reactor that is not due yet, in about 24 bytes of bookkeeping plus the reply text.
///
/// The `DeadlineQueue` keeps one FIFO per delay; the reply texts of one delay are kept in the same order in one
/// byte ring (a `ByteBuffer` used as a FIFO), so popping an entry pops exactly the next line of its ring. No
/// per-reply allocation, no per-reply object: 1,000,000 pending one-command replies cost tens of MiB.
/// Replies of closed connections stay queued until due (their bytes are dropped then, unsent).
final class PendingReplies {
    private var queue = DeadlineQueue<PendingRef>()
    private var rings: [ByteBuffer] = []
    private var ringByDelay: [UInt64: UInt32] = [:]
    // Most requests share a handful of delays: skip the dictionary when the delay repeats.
    private var lastDelay: UInt64 = 0
    private var lastRing: UInt32 = 0

    /// A ring keeps up to this much capacity when it empties, so steady traffic does not reallocate.
    private static let ringKeep = 64 * 1024

    var count: Int { queue.count }
    var nextDeadline: UInt64? { queue.nextDeadline }

    /// Queues `line` (one complete reply line, LF included) for `slot`/`generation`, due at `deadline`.
    func insert(line: UnsafeRawBufferPointer, deadline: UInt64, delay: UInt64,
                slot: UInt32, generation: UInt32, commands: Int) {
        let ring = ringIndex(delay: delay)
        rings[Int(ring)].append(line)
        queue.insert(deadline: deadline, delay: delay,
                     payload: PendingRef(slot: slot, generation: generation, ring: ring, commands: UInt32(commands)))
    }

    /// Removes every reply due at `now` or earlier, in deadline order, handing each to `body` with its deadline
    /// and its line (valid only during the call).
    func popDue(now: UInt64, _ body: (PendingRef, UInt64, UnsafeRawBufferPointer) -> Void) {
        queue.popDue(now: now) { ref, deadline in
            let ring = rings[Int(ref.ring)]
            let view = ring.readableView
            // Each ring holds whole lines in queue order: the next line ends at the first LF.
            guard let lf = memchr(view.baseAddress!, 0x0A, view.count) else {
                preconditionFailure("pending reply ring out of step with its deadline queue")
            }
            let length = view.baseAddress!.distance(to: UnsafeRawPointer(lf)) + 1
            body(ref, deadline, UnsafeRawBufferPointer(rebasing: view[0..<length]))
            ring.consume(length)
            if ring.isEmpty { ring.shrinkIfEmpty(limit: Self.ringKeep) }
        }
    }

    private func ringIndex(delay: UInt64) -> UInt32 {
        if delay == lastDelay && !rings.isEmpty { return lastRing }
        let ring: UInt32
        if let existing = ringByDelay[delay] {
            ring = existing
        } else {
            ring = UInt32(rings.count)
            rings.append(ByteBuffer(capacity: 256))
            ringByDelay[delay] = ring
        }
        lastDelay = delay
        lastRing = ring
        return ring
    }
}
