import AsyncComCore
import Glibc

/// Where a request's item bytes are in the `ItemSlab`: plain values, so copying or destroying a `Request`
/// retains and releases nothing for them.
struct ItemBlock {
    let base: UnsafeMutableRawPointer
    let count: Int

    /// The bytes (valid until the block is released).
    @inline(__always) var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
}

/// The item bytes of the requests in flight (` a:b c:d`, encoded once, re-sent as they are), in blocks carved
/// from a few large chunks instead of one `ByteBuffer` object with a storage allocation of its own per request.
///
/// Why: with ~4.5 M commands in flight (10M x 1 s, batch 16) the client held ~280,000 buffers, each two mallocs
/// (object and storage), a retain and a release per move between the table, the batch and the spare list, and
/// the heap it ramped into faulted in page by page. malloc, free, those retains and releases and the faults were
/// ~10% of the client's samples (perf). Measured with the slab (10M x 1 s, CLI defaults, 8 interleaved runs, load
/// 1.7): client CPU 1.525 -> 1.315 s (user + sys, medians), peak RSS 347 -> 253 MiB.
///
/// A block's size is its byte count rounded up to 32 bytes; each size has a free list threaded through the freed
/// blocks themselves, so a request's bytes usually land where an answered request of the same size had them
/// (cache-warm, no fault). Fresh blocks are cut from the current chunk; chunks are never moved (a block's address
/// is stable while it lives) and are freed with the slab, at the job's end. A block over `largeBytes` (a batch of
/// thousands of items) is an allocation of its own, freed when released.
/// Loop thread only.
final class ItemSlab {
    static let granule = 32
    /// Larger blocks are allocated one by one.
    static let largeBytes = 64 << 10
    /// The first chunk; each next one doubles, up to `maxChunkBytes` (a small job holds little).
    static let firstChunkBytes = 64 << 10
    static let maxChunkBytes = 2 << 20
    private static let classes = largeBytes / granule + 1

    private var chunks: [LargeMemory] = []
    /// Where the next fresh block starts in the newest chunk, and the bytes left after it.
    @exclusivity(unchecked) private var fresh: UnsafeMutableRawPointer?
    @exclusivity(unchecked) private var freshBytes = 0
    /// Per size class (bytes / granule), the first free block; each free block holds the address of the next.
    private let freeHeads: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// Blocks stored and not released.
    @exclusivity(unchecked) private(set) var liveBlocks = 0

    init() {
        freeHeads = .allocate(capacity: Self.classes)
        freeHeads.initialize(repeating: nil, count: Self.classes)
    }

    deinit {
        for chunk in chunks { chunk.deallocate() }
        freeHeads.deallocate()
    }

    /// Bytes of the chunks (what the slab holds from the system, large blocks aside).
    var chunkBytes: Int { chunks.reduce(0) { $0 + $1.byteCount } }

    /// Copies `bytes` into a block of their own.
    func store(_ bytes: UnsafeRawBufferPointer) -> ItemBlock {
        let n = bytes.count
        let base = n > Self.largeBytes ? UnsafeMutableRawPointer.allocate(byteCount: n, alignment: Self.granule) : take(sizeClass(n))
        if n > 0 { base.copyMemory(from: bytes.baseAddress!, byteCount: n) }
        liveBlocks += 1
        return ItemBlock(base: base, count: n)
    }

    /// Gives `block` back (its bytes are invalid from here on).
    func release(_ block: ItemBlock) {
        liveBlocks -= 1
        if block.count > Self.largeBytes {
            block.base.deallocate()
        } else {
            push(block.base, sizeClass(block.count))
        }
    }

    @inline(__always) private func sizeClass(_ n: Int) -> Int { max(1, (n + Self.granule - 1) / Self.granule) }

    @inline(__always) private func take(_ k: Int) -> UnsafeMutableRawPointer {
        if let head = freeHeads[k] {
            freeHeads[k] = head.load(as: UnsafeMutableRawPointer?.self)
            return head
        }
        let size = k * Self.granule
        if freshBytes < size { addChunk() }
        let block = fresh!
        fresh = block + size
        freshBytes -= size
        return block
    }

    @inline(__always) private func push(_ block: UnsafeMutableRawPointer, _ k: Int) {
        block.storeBytes(of: freeHeads[k], as: UnsafeMutableRawPointer?.self)
        freeHeads[k] = block
    }

    private func addChunk() {
        // The newest chunk's rest is a free block of its own size (every size is a multiple of the granule).
        if let fresh, freshBytes >= Self.granule { push(fresh, freshBytes / Self.granule) }
        let size = chunks.isEmpty ? Self.firstChunkBytes : min(Self.maxChunkBytes, chunks.last!.byteCount * 2)
        // Zeroed and faulted in at once (`LargeMemory`): one call instead of a page fault per 4 KiB.
        let chunk = LargeMemory(byteCount: size)
        chunks.append(chunk)
        fresh = chunk.base
        freshBytes = size
    }
}
