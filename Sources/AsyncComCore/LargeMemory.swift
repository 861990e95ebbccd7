#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
        if n >= LargeMemory.mapThreshold,
           let p = mmap(nil, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED
        {
            #if os(Linux)
            _ = madvise(p, n, MADV_HUGEPAGE)  // a hint: ignored when THP is off
            #endif
            base = p
            mapped = true
        } else {
            guard let p = calloc(n, 1) else { fatalError("out of memory allocating \(n) bytes for the device map") }
            base = p
            mapped = false
        }
    }

    func typed<T>(_: T.Type) -> UnsafeMutablePointer<T> { base.assumingMemoryBound(to: T.self) }

    func deallocate() {
        if mapped { munmap(base, byteCount) } else { free(base) }
    }
}
