/// Reconnect delays: 50 ms doubling to 1 s, reset once a connection completes its handshake.
struct Backoff {
    static let initialNanos: UInt64 = 50_000_000
    static let maxNanos: UInt64 = 1_000_000_000

    private(set) var nextNanos: UInt64 = Backoff.initialNanos

    mutating func next() -> UInt64 {
        let d = nextNanos
        nextNanos = min(nextNanos * 2, Backoff.maxNanos)
        return d
    }

    mutating func reset() { nextNanos = Backoff.initialNanos }
}
