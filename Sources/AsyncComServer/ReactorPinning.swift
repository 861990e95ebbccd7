/// Whether each reactor thread is bound to a CPU of its own (`--pin-reactors`).
///
/// Why: with the client on the same two cores, the scheduler at times put both reactors on one CPU (its load
/// balancer moves threads only every few milliseconds), and then they took turns a whole tick apart (4 ms at
/// HZ=250) while their peers' requests queued. Measured with the diagnostic build of branch `diag` (per-request
/// stamps, `asynccom-client` defaults, 1M x 1 s with a 1M-entry map, 4 interleaved runs each, load 2.8-3.7):
/// lateness p99 7.1 / 6.9 / 7.0 / 9.9 ms unpinned, 4.2 / 4.3 / 4.2 / 4.5 ms pinned; 10M x 1 s (3 runs each,
/// load 4-6): p99 19.4 / 25.2 / 28.9 ms unpinned, 11.6 / 12.1 / 9.5 ms pinned.
public enum ReactorPinning: String, Sendable, CaseIterable {
    /// Pin when the server has one reactor per CPU it may run on (the default reactor count): the server then
    /// owns those CPUs anyway, and nothing is gained by letting reactors share one. With fewer reactors (several
    /// small servers on one host) the scheduler keeps placing them, so they do not all crowd onto the first CPUs.
    case auto
    /// Reactor `i` on the `i`-th allowed CPU, round robin when there are more reactors than CPUs.
    case on
    /// Never pin.
    case off

    /// The CPU each reactor is bound to (nil: not bound), given the CPUs the process may run on, ascending.
    public func cpus(reactors: Int, allowed: [Int]) -> [Int?] {
        guard reactors > 0 else { return [] }
        let pin: Bool
        switch self {
        case .off: pin = false
        case .on: pin = !allowed.isEmpty
        case .auto: pin = allowed.count > 1 && reactors == allowed.count
        }
        guard pin else { return Array(repeating: nil, count: reactors) }
        return (0..<reactors).map { allowed[$0 % allowed.count] }
    }
}
