#if canImport(Glibc)
import Glibc
#endif

/// Reply lines that leave in deadline order rather than in the order they came (the overflow heap's, see
/// `PendingReplies`), so they cannot share a FIFO ring. A line of up to `slotBytes` bytes takes a fixed slot of
/// one big allocation, reused through a free list; a longer one gets an allocation of its own. A malloc and a
/// free per reply, the first design, left glibc consolidating fragments on the reply path (a fifth of the
/// server's time with many distinct waits).
final class TextSlab {
    static let slotBytes = 64
    private static let bigFlag: UInt32 = 1 << 30
    private static let initialSlots = 1024

    private var slots: UnsafeMutableRawPointer?
    private var capacity = 0
    /// Slots handed out so far from the fresh end; below it, freed slots are in `freeSlots`.
    private var fresh = 0
    private var freeSlots: [UInt32] = []
    private var big: [UnsafeMutableRawPointer?] = []
    private var freeBig: [UInt32] = []
    /// Texts stored and not released.
    private(set) var count = 0

    deinit {
        free(slots)
        for text in big { free(text) }
    }

    /// Copies `line` (one reply line, LF included); returns its handle, below 2^31.
    func store(_ line: UnsafeRawBufferPointer) -> UInt32 {
        count += 1
        guard line.count <= Self.slotBytes else {
            let text = malloc(line.count)!
            text.copyMemory(from: line.baseAddress!, byteCount: line.count)
            if let index = freeBig.popLast() {
                big[Int(index)] = text
                return Self.bigFlag | index
            }
            big.append(text)
            return Self.bigFlag | UInt32(big.count - 1)
        }
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = Int(free)
        } else {
            if fresh == capacity { grow() }
            slot = fresh
            fresh += 1
        }
        (slots! + slot * Self.slotBytes).copyMemory(from: line.baseAddress!, byteCount: line.count)
        return UInt32(slot)
    }

    /// The line stored under `handle` (valid until it is released).
    @inline(__always) func text(_ handle: UInt32) -> UnsafeRawBufferPointer {
        let start: UnsafeRawPointer
        let limit: Int
        if handle & Self.bigFlag != 0 {
            start = UnsafeRawPointer(big[Int(handle & ~Self.bigFlag)]!)
            limit = Int.max
        } else {
            start = UnsafeRawPointer(slots! + Int(handle) * Self.slotBytes)
            limit = Self.slotBytes
        }
        // A reply is one line: it ends at its LF.
        var n = 0
        while n < limit && start.load(fromByteOffset: n, as: UInt8.self) != 0x0A { n += 1 }
        precondition(n < limit, "stored reply text without its line feed")
        return UnsafeRawBufferPointer(start: start, count: n + 1)
    }

    func release(_ handle: UInt32) {
        count -= 1
        if handle & Self.bigFlag != 0 {
            let index = handle & ~Self.bigFlag
            free(big[Int(index)])
            big[Int(index)] = nil
            freeBig.append(index)
        } else {
            freeSlots.append(handle)
        }
        if count == 0 { reset() }
    }

    /// Bytes held (slots and long texts' pointers; the long texts themselves are counted by their owner).
    var storageBytes: Int { capacity * Self.slotBytes }

    /// Everything released: give a burst's memory back and start over.
    private func reset() {
        if capacity > Self.initialSlots {
            free(slots)
            slots = nil
            capacity = 0
        }
        fresh = 0
        freeSlots.removeAll(keepingCapacity: freeSlots.capacity <= Self.initialSlots)
        // Every long text was released, so every index of `big` is in `freeBig` already.
        if big.count > 64 {
            big = []
            freeBig = []
        }
    }

    private func grow() {
        let newCapacity = max(Self.initialSlots, capacity * 2)
        guard let grown = realloc(slots, newCapacity * Self.slotBytes) else { fatalError("out of memory for reply texts") }
        slots = grown
        capacity = newCapacity
    }
}
