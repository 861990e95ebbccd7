/// Whether each reactor thread is bound to a CPU of its own (`--pin-reactors`).
///
/// Why: with the client on the same two cores, the scheduler at times put both reactors on one CPU (its load
/// balancer moves threads only every few milliseconds), and then they took turns a whole tick apart (4 ms at
/// HZ=250) while their peers' requests queued (a diagnostic build's per-request stamps showed 4.06 ms gaps inside
/// the handling of one read, every 8 or 16 ms). Measured with one binary, `--pin-reactors on` vs `off`,
/// `asynccom-client` defaults, runs interleaved, the machine otherwise idle: 1M x 1 s with a 1M-entry map,
/// lateness p99 2.2 vs 6.8 ms (6 runs each), wall 1.26 vs 1.18 s; 10M x 1 s, p99 9.7 vs 15.3 ms (4 runs), wall
/// 3.39 vs 3.19 s; zero-wait 2M commands 0.474 vs 0.392 s. The price is the co-located client's, which must share
/// a CPU with a reactor. In the bench (client in the same 2 cores, 2 interleaved rounds of 3 runs, host stealing up
/// to 1.5 s of CPU per job): zero-wait throughput 8.9 / 8.1 M commands/s off vs 5.7 / 5.6 on, 10M x 1 s wall
/// 2.38 / 2.50 vs 2.95 / 3.64 s, lateness p99 1M 6.1 / 6.5 vs 4.4 / 5.8 ms. So it is off by default: the gateway's
/// throughput figures are its headline, and only a host of its own gets the lateness gain for free. (Those runs
/// had two busy reactors: the client then opened one connection per reactor. With its one connection since, the
/// bench showed neither the cost, 8.6 vs 9.0 M commands/s, nor a consistent gain: docs/ARCHITECTURE.md.)
public enum ReactorPinning: String, Sendable, CaseIterable {
    /// Pin when the server has one reactor per CPU it may run on (the default reactor count): a server that owns
    /// its host. With fewer reactors (several small servers on one host) the scheduler keeps placing them, so they
    /// do not all crowd onto the first CPUs.
    case auto
    /// Reactor `i` on the `i`-th allowed CPU, round robin when there are more reactors than CPUs.
    case on
    /// Never pin (the default).
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
