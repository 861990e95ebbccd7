import Glibc

/// Zeroed raw memory for the device map's big arrays. Large blocks are mapped directly and, where the kernel
/// allows it, backed by transparent huge pages: loading a million-entry map touches ~100 MiB, and with 4 KiB
/// pages the page faults cost about as much as the parsing itself.
struct LargeMemory {
    let base: UnsafeMutableRawPointer
    let byteCount: Int
    private let mapped: Bool

    /// Below this, malloc's own pools do better.
    static let mapThreshold = 1 << 21

    init(byteCount requested: Int) {
        let n = max(requested, 16)
        byteCount = n
        if n >= LargeMemory.mapThreshold, let p = LargeMemory.mapAligned(n) {
            base = p
            mapped = true
        } else {
            // Cache-line aligned, so that fixed-size records (32-byte hash slots) never straddle two lines.
            var p: UnsafeMutableRawPointer?
            guard posix_memalign(&p, 64, n) == 0, let p else {
                fatalError("out of memory allocating \(n) bytes for the device map")
            }
            memset(p, 0, n)
            base = p
            mapped = false
        }
    }

    /// Address space for an array whose final size is known only as a bound: mapped without reserving swap, so
    /// that only the pages written ever count (`MAP_NORESERVE`).
    init(reserving requested: Int) {
        let n = max(requested, 16)
        byteCount = n
        guard let p = LargeMemory.mapAligned(n, flags: MAP_NORESERVE) else {
            fatalError("out of address space reserving \(n) bytes for the device map")
        }
        base = p
        mapped = true
    }

    /// Maps `n` bytes starting on a 2 MiB boundary. A huge page can only back an aligned 2 MiB range, and mmap
    /// returns 4 KiB-aligned addresses: a 2 MiB hash table mapped as is would get no huge page at all, and its
    /// lookups would pay a TLB miss each on top of the cache miss.
    private static func mapAligned(_ n: Int, flags: Int32 = 0) -> UnsafeMutableRawPointer? {
        let huge = LargeMemory.mapThreshold
        let n = (n + 4095) & ~4095  // munmap needs page-aligned addresses for the tail
        let padded = n + huge
        guard let raw = mmap(nil, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0),
              raw != MAP_FAILED
        else { return nil }
        let start = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: raw) + huge - 1) & ~(huge - 1))!
        let head = start - raw
        if head > 0 { munmap(raw, head) }
        let tail = padded - head - n
        if tail > 0 { munmap(start + n, tail) }
        _ = madvise(start, n, MADV_HUGEPAGE)  // a hint: ignored when THP is off
        return start
    }

    func typed<T>(_: T.Type) -> UnsafeMutablePointer<T> { base.assumingMemoryBound(to: T.self) }

    func deallocate() {
        if mapped { munmap(base, byteCount) } else { free(base) }
    }
}
