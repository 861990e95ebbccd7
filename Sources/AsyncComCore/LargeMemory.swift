import Glibc

/// Zeroed raw memory for the device map's hash tables, which are written at random while loading and read at
/// random for lookups, and for the chunks of the client's `ItemSlab`. Large blocks are mapped directly, faulted
/// in whole at once, and then offered to transparent huge pages.
///
/// Why in that order: on this machine (a KVM guest with free page reporting) fresh huge pages are often memory
/// the host has taken back, and zeroing them runs at host-fault speed. Populating 400 MiB measured 0.5-0.7 s
/// with 4 KiB pages and 12-16 s with huge pages (200 MiB: 0.17 s / 3.6-7.4 s; at other times 0.07 s for both),
/// which made a 10M-entry load take anywhere from 1.7 to 13 s. So the table is faulted in with small pages
/// (`MADV_POPULATE_WRITE`: one call, no fault per page in the insert loop), and only then marked
/// `MADV_HUGEPAGE`, which lets khugepaged (a nice 19 kernel thread) merge it into huge pages in the background.
/// Huge pages are still wanted for lookups: independent random reads of a 200 MiB table measured 30-37 ns with
/// huge pages against 37-56 ns with small ones (TLB misses).
package struct LargeMemory {
    package let base: UnsafeMutableRawPointer
    package let byteCount: Int
    private let mapped: Bool

    /// Below this, malloc's own pools do better.
    static let mapThreshold = 1 << 21

    package init(byteCount requested: Int) {
        let n = max(requested, 16)
        byteCount = n
        if n >= LargeMemory.mapThreshold, let p = LargeMemory.mapAligned(n) {
            base = p
            mapped = true
            _ = madvise(p, n, LargeMemory.populateWrite)  // EINVAL before Linux 5.14: faulted on demand then
            _ = madvise(p, n, MADV_HUGEPAGE)  // a hint: ignored when THP is off
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

    /// `MADV_POPULATE_WRITE` (Linux 5.14), not in every libc's headers.
    static let populateWrite: Int32 = 23

    /// Maps `n` bytes starting on a 2 MiB boundary. A huge page can only back an aligned 2 MiB range, and mmap
    /// returns 4 KiB-aligned addresses: a 2 MiB hash table mapped as is would never get a huge page.
    private static func mapAligned(_ n: Int) -> UnsafeMutableRawPointer? {
        let huge = LargeMemory.mapThreshold
        let n = (n + 4095) & ~4095  // munmap needs page-aligned addresses for the tail
        let padded = n + huge
        guard let raw = mmap(nil, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED
        else { return nil }
        let start = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: raw) + huge - 1) & ~(huge - 1))!
        let head = start - raw
        if head > 0 { munmap(raw, head) }
        let tail = padded - head - n
        if tail > 0 { munmap(start + n, tail) }
        return start
    }

    func typed<T>(_: T.Type) -> UnsafeMutablePointer<T> { base.assumingMemoryBound(to: T.self) }

    package func deallocate() {
        if mapped { munmap(base, byteCount) } else { free(base) }
    }
}
