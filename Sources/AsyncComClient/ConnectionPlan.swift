/// How many connections one server gets. Pure: the engine reports each connection's first HELLO and does what
/// the plan says.
///
/// With a configured count, exactly that many. Otherwise one per server reactor: SO_REUSEPORT spreads
/// connections over a server's reactors by a hash, so one connection keeps one of its cores busy. New
/// connections are opened until every reactor index named in HELLO (`reactors=`, `reactor=`) has one; a
/// connection that lands on a reactor already covered is closed (while coverage is incomplete, so that each
/// reactor gets an equal share). Attempts are bounded (`attemptsPerReactor` x reactors); when they run out,
/// the uncovered reactors are reported. Then, when `max_inflight` per connection binds (the server's share of
/// the budget needs more than one per reactor), more connections are added.
struct ConnectionPlan: Equatable {
    enum Decision: Equatable {
        /// Keep the connection; open this many more.
        case keep(open: Int)
        /// Close the connection (its reactor already has one); open this many more.
        case retire(open: Int)
    }

    static let attemptsPerReactor = 4

    /// Configured connections per server; nil: adaptive.
    let fixed: Int?
    let maxConnections: Int
    /// The server's reactor count, once a HELLO named more than one.
    private(set) var reactors: Int?
    private(set) var covered: [Bool] = []
    /// Connections opened so far (kept, retired, or not handshaken yet).
    private(set) var opened: Int
    private(set) var kept = 0
    private(set) var retired = 0
    /// Reactor coverage is over (complete, or attempts ran out).
    private(set) var settled = false
    /// Coverage attempts ran out with reactors uncovered.
    private(set) var coverageFailed = false

    init(fixed: Int?, maxConnections: Int) {
        self.fixed = fixed
        self.maxConnections = max(1, maxConnections)
        self.opened = fixed ?? 1
    }

    /// Connections to open at the start.
    var initial: Int { opened }

    var coveredCount: Int { covered.reduce(0) { $0 + ($1 ? 1 : 0) } }

    /// Opened connections that have not completed a handshake yet.
    var pending: Int { opened - kept - retired }

    /// A connection completed its first handshake.
    mutating func handshake(limits: ServerLimits) -> Decision {
        if reactors == nil && !settled, let r = limits.reactors, r >= 1 {
            reactors = r
            covered = Array(repeating: false, count: r)
        }
        guard fixed == nil else {
            // A fixed count: where the connections land is only reported.
            if let r = reactors, let k = limits.reactor, k < r { covered[k] = true }
            kept += 1
            return .keep(open: 0)
        }
        var retire = false
        if let r = reactors, !settled {
            if let k = limits.reactor, k < r {
                if covered[k] { retire = true } else { covered[k] = true }
            }
            if coveredCount == r || kept + (retire ? 0 : 1) >= maxConnections {
                settled = true
            } else if opened >= Self.attemptsPerReactor * r {
                settled = true
                coverageFailed = true
            }
        } else {
            settled = true
        }
        if retire { retired += 1 } else { kept += 1 }
        // One at a time while covering: each new connection shows where it landed.
        let open = !settled && pending == 0 ? 1 : 0
        opened += open
        return retire ? .retire(open: open) : .keep(open: open)
    }

    /// Most connections a server gets for the budget (each costs a descriptor and buffers at both ends; 8 of the
    /// asynccom server's default 1 Mi commands each hold twice the default budget).
    static let maxBudgetConnections = 8

    /// The engine's in-flight depth is bound by the connections' `max_inflight` while the budget has room:
    /// returns how many connections to add (coverage first; only for an adaptive count). `wanted`: see
    /// `DepthPolicy.connectionsForBudget`.
    mutating func grow(wanted: Int) -> Int {
        guard fixed == nil, settled else { return 0 }
        let target = min(maxConnections, max(reactors ?? 1, min(wanted, Self.maxBudgetConnections)))
        let open = max(0, target - kept - pending)
        opened += open
        return open
    }
}
