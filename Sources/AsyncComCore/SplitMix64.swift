/// SplitMix64: a tiny seeded generator that gives the same numbers on every platform, unlike the system one.
/// For generated data sets and randomised tests, so that any run can be reproduced from its seed. Its `mix` is
/// also the project's one 64-bit mixing function (the client's device sharding).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        defer { state &+= 0x9E37_79B9_7F4A_7C15 }
        return SplitMix64.mix(state)
    }

    /// The splitmix64 step as a hash: cheap, and every input bit affects every output bit.
    @inlinable @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
