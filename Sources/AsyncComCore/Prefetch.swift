import CPrefetch

/// Software prefetch: asks the CPU to start loading a cache line that will be needed soon, without waiting for
/// it. For state that is certainly cold (a request sent a second ago, about to be answered; a big device map's
/// slot), issued ahead of its use, so that the miss overlaps the work in between instead of stalling it. Pure: a
/// hint changes no result, so Core (which the fuzzers build alone) may use it.
public enum Prefetch {
    @inlinable @inline(__always)
    public static func forRead(_ p: UnsafeRawPointer) {
        asynccom_prefetch(p)
    }
}
