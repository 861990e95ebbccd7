extension Double {
    /// Seconds (a configuration value) to whole nanoseconds, the one conversion: 0 for zero, negative and NaN,
    /// saturating at `UInt64.max / 2` (about 292 years), so that `now + nanos` cannot overflow either.
    @inlinable @inline(__always)
    package var secondsAsNanos: UInt64 {
        guard self > 0 else { return 0 }
        let n = self * 1e9
        return n >= 9.2e18 ? UInt64.max / 2 : UInt64(n)
    }
}
