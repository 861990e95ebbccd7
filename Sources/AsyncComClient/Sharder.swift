import AsyncComCore

/// Maps a device to a server by rendezvous (highest random weight) hashing: stable for a device while its
/// server is up, and when a server goes down only that server's devices move, spread over the others.
struct Sharder {
    let serverCount: Int

    @inline(__always) static func hash(_ device: DeviceAddress) -> UInt64 {
        SplitMix64.mix(device.high ^ SplitMix64.mix(device.low))
    }

    /// The server for `key` among those for which `isAlive` holds; nil when none is.
    @inline(__always) func pick(key: UInt64, isAlive: (Int) -> Bool) -> Int? {
        if serverCount == 1 { return isAlive(0) ? 0 : nil }
        var best: Int?
        var bestScore: UInt64 = 0
        for s in 0..<serverCount where isAlive(s) {
            let score = SplitMix64.mix(key ^ (UInt64(s) &* 0xD6E8_FEB8_6659_FD93))
            if best == nil || score > bestScore {
                best = s
                bestScore = score
            }
        }
        return best
    }

    /// The server a device belongs to when every server is up (its "home", named in failure reasons).
    func home(key: UInt64) -> Int { pick(key: key, isAlive: { _ in true })! }
}
