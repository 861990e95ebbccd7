/// How many connections one server gets. Pure: the engine reports each connection's first HELLO and when the
/// server lags behind what the client sends (`OutputLag`), and does what the plan says.
///
/// With a configured count, exactly that many. Otherwise one to start with: one server reactor keeps up with one
/// client's engine (measured on 2 cores, client and server together: 1,000,000 x 1 s commands, 10 interleaved
/// runs each, lateness p99 3.3 ms with one connection vs 5.6 ms with one per reactor; 2 M zero-wait commands in
/// 0.23 s vs 0.26 s), and each more reactor kept busy is one more thread wanting a core: where there are fewer
/// cores than busy threads, a reactor preempted mid-read waits a whole scheduler tick (4 ms at HZ=250) with the
/// requests it has not read yet.
///
/// When the server lags (`spread()`), new connections are opened until every reactor index named in HELLO
/// (`reactors=`, `reactor=`) has one (SO_REUSEPORT spreads connections over a server's reactors by a hash); a
/// connection that lands on a reactor already covered is closed (while coverage is under way, so that each
/// reactor gets an equal share). Attempts are bounded (`attemptsPerReactor` x reactors); when they run out, the
/// uncovered reactors are reported. When `max_inflight` per connection binds (the server's share of the budget
/// needs more than one connection), more connections are added, kept wherever they land.
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
    /// The server's reactor count, once a HELLO named one.
    private(set) var reactors: Int?
    /// Reactors that have a kept connection.
    private(set) var covered: [Bool] = []
    /// Connections opened so far (kept, retired, or not handshaken yet).
    private(set) var opened: Int
    private(set) var kept = 0
    private(set) var retired = 0
    /// Coverage of the reactors is under way (the server lagged; not complete, attempts left).
    private(set) var covering = false
    /// The server lagged once: coverage was asked for (it is asked for once per job).
    private(set) var spread = false
    /// `opened` when coverage began: its attempts are counted from there.
    private var coverageStart = 0
    /// Coverage attempts ran out with reactors uncovered.
    private(set) var coverageFailed = false

    init(fixed: Int?, maxConnections: Int) {
        self.fixed = fixed
        self.maxConnections = max(1, maxConnections)
        self.opened = fixed ?? 1
    }

    /// Connections to open at the start.
    var initial: Int { opened }

    /// No coverage under way: what is open stays as it is until the server lags or the budget binds.
    var settled: Bool { !covering }

    var coveredCount: Int { covered.reduce(0) { $0 + ($1 ? 1 : 0) } }

    /// Opened connections that have not completed a handshake yet.
    var pending: Int { opened - kept - retired }

    /// A connection completed its first handshake.
    mutating func handshake(limits: ServerLimits) -> Decision {
        if reactors == nil, let r = limits.reactors, r >= 1 {
            reactors = r
            covered = Array(repeating: false, count: r)
        }
        var retire = false
        if let r = reactors, let k = limits.reactor, k < r {
            // Only a coverage connection is closed for landing on a covered reactor: the first one, a fixed
            // count's and the budget's are kept wherever they land.
            if covering && covered[k] { retire = true } else { covered[k] = true }
        }
        if retire { retired += 1 } else { kept += 1 }
        guard covering, let r = reactors else { return .keep(open: 0) }
        if coveredCount == r || kept >= maxConnections {
            covering = false
        } else if opened - coverageStart >= Self.attemptsPerReactor * r {
            covering = false
            coverageFailed = true
        }
        // One at a time while covering: each new connection shows where it landed.
        let open = covering && pending == 0 ? 1 : 0
        opened += open
        return retire ? .retire(open: open) : .keep(open: open)
    }

    /// Whether `serverLags()` would open a connection: the engine watches for lag only while it would.
    var mayCover: Bool {
        guard fixed == nil, !spread, let r = reactors else { return false }
        return coveredCount < r && kept + pending < maxConnections
    }

    /// The server lags behind the client (`OutputLag`): returns how many connections to open (0 or 1) to cover
    /// the reactors that have none. Once per job, only for an adaptive count, and only when HELLO named reactors
    /// that no connection has yet.
    mutating func serverLags() -> Int {
        guard mayCover else { return 0 }
        spread = true
        covering = true
        coverageStart = opened
        opened += 1
        return 1
    }

    /// Most connections a server gets for the budget (each costs a descriptor and buffers at both ends; one of
    /// the asynccom server's default 8 Mi commands holds the default budget, 8 of the 1 Mi of servers before it).
    static let maxBudgetConnections = 8

    /// The engine's in-flight depth is bound by the connections' `max_inflight` while the budget has room:
    /// returns how many connections to add (not while coverage is under way; only for an adaptive count). `wanted`: see
    /// `DepthPolicy.connectionsForBudget`.
    mutating func grow(wanted: Int) -> Int {
        guard fixed == nil, !covering else { return 0 }
        let target = min(maxConnections, min(wanted, Self.maxBudgetConnections))
        let open = max(0, target - kept - pending)
        opened += open
        return open
    }
}

/// Whether a connection's server keeps up with what the client writes, from the connection's output alone.
/// Pure: `now` comes in.
///
/// After a write, bytes left in the output mean the socket took no more: the server's receive buffer and this
/// socket's unsent allowance (`sendLowWater`) are full, so the server reads slower than the client writes. The
/// server lags once the output has stayed unwritten, never drained, for `lagAfter`: long enough that a reactor
/// preempted for a scheduler tick or a host's pause of a few tens of milliseconds does not count, short beside a
/// job that a lagging server would slow for seconds.
struct OutputLag: Equatable {
    /// Output unwritten for this long: the server lags.
    static let lagAfter: UInt64 = 50_000_000

    /// Since when the output has had bytes the socket would not take; nil while it drains.
    private(set) var since: UInt64?

    init() {}

    /// A write emptied the output: the socket took everything.
    mutating func drained() { since = nil }

    /// A write left bytes in the output; returns whether this started a lag (the output had drained before).
    mutating func blocked(now: UInt64) -> Bool {
        guard since == nil else { return false }
        since = now
        return true
    }

    /// When the server counts as lagging if the output does not drain before.
    var deadline: UInt64? { since.map { $0 &+ Self.lagAfter } }

    /// `lagAfter` of output unwritten, never drained.
    func lags(now: UInt64) -> Bool {
        guard let deadline else { return false }
        return now >= deadline
    }

    /// The connection is closed or starts over.
    mutating func reset() { since = nil }
}
