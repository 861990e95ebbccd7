/// How many connections one server gets. Pure: the engine reports each connection's first HELLO and when the
/// server lags behind what the client sends (`OutputLag`), and does what the plan says.
///
/// With a configured count, exactly that many. Otherwise one to start with: one server reactor keeps up with one
/// client's engine (measured on 2 cores, client and server together: 1,000,000 x 1 s commands, 10 interleaved
/// runs each, lateness p99 3.3 ms with one connection vs 5.6 ms with one per reactor; 2 M zero-wait commands in
/// 0.22 s vs 0.26 s, medians of 5), and each more reactor kept busy is one more thread wanting a core: where there
/// are fewer cores than busy threads, a reactor preempted mid-read waits a whole scheduler tick (4 ms at HZ=250)
/// with the requests it has not read yet.
///
/// When the server lags (`serverLagged()`), new connections are opened until every reactor index named in HELLO
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
    /// Whether new connections can reach other reactors at all (not over a Unix socket, which one reactor serves).
    let coverable: Bool
    /// The server's reactor count, once a HELLO named one.
    private(set) var reactors: Int?
    /// Reactors that have a kept connection, and how many.
    private(set) var covered: [Bool] = []
    private(set) var coveredCount = 0
    /// Connections opened so far (kept, retired, or not handshaken yet).
    private(set) var opened: Int
    private(set) var kept = 0
    private(set) var retired = 0
    /// Coverage of the reactors is under way (the server lagged; not complete, attempts left).
    private var covering = false
    /// The server lagged once: coverage was asked for (it is asked for once per job).
    private(set) var lagged = false
    /// `opened` when coverage began: its attempts are counted from there.
    private var coverageStart = 0
    /// Coverage attempts ran out with reactors uncovered.
    private(set) var coverageFailed = false

    init(fixed: Int?, maxConnections: Int, coverable: Bool = true) {
        self.fixed = fixed
        self.maxConnections = max(1, maxConnections)
        self.coverable = coverable
        self.opened = fixed ?? 1
    }

    /// Connections to open at the start.
    var initial: Int { opened }

    /// No coverage under way: what is open stays as it is until the server lags or the budget binds.
    var settled: Bool { !covering }

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
            if covered[k] {
                retire = covering
            } else {
                covered[k] = true
                coveredCount += 1
            }
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

    /// Whether `serverLagged()` would open a connection: the engine watches for lag only while it would. Only for an
    /// adaptive count, once per job, when HELLO named the reactor of a connection and reactors that have none yet,
    /// and with no connection still on its way (one opened for the budget must not count as a coverage attempt).
    var mayCover: Bool {
        guard fixed == nil, coverable, !lagged, let r = reactors, coveredCount >= 1 else { return false }
        return coveredCount < r && pending == 0 && kept < maxConnections
    }

    /// The server lags behind the client (`OutputLag`): returns how many connections to open (0 or 1) to cover the
    /// reactors that have none (see `mayCover`).
    mutating func serverLagged() -> Int {
        guard mayCover else { return 0 }
        lagged = true
        covering = true
        coverageStart = opened
        opened += 1
        return 1
    }

    /// Most connections a server gets for the budget (each costs a descriptor and buffers at both ends; one of
    /// the asynccom server's default 8 Mi commands holds the default budget, 8 of the 1 Mi of servers before it).
    static let maxBudgetConnections = ClientConfiguration.maxBudgetConnectionsPerServer

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
/// socket's kernel send buffer (at most `sendLowWater` unsent, for TCP) are full, so the server reads slower than
/// the client writes. The server lags once the output has stayed unwritten, never drained, for
/// `ClientConfiguration.serverLagSeconds`: long enough that a reactor preempted for a scheduler tick or a host's
/// pause of a few tens of milliseconds does not count, short beside a job that a lagging server would slow for
/// seconds. A look that comes more than half that late after the deadline (this client's loop was held up: a slow
/// result consumer, a starved CPU; the server may have stopped reading only because this client stopped reading
/// its replies) starts the watch over instead.
struct OutputLag: Equatable {
    static let lagAfter = UInt64(ClientConfiguration.serverLagSeconds * 1e9)

    /// What a look at an unwritten output concludes.
    enum Verdict: Equatable {
        /// Not unwritten for long enough yet.
        case waiting
        /// A watch starts (or starts over): look again at `deadline` if no write does.
        case watching
        /// The server lags.
        case lags
    }

    /// Since when the output has had bytes the socket would not take; nil while it drains.
    private(set) var since: UInt64?

    init() {}

    /// A write emptied the output: the socket took everything.
    mutating func drained() { since = nil }

    /// The output has bytes the socket would not take (after a write, or when the connection's timer fires).
    mutating func unwritten(now: UInt64) -> Verdict {
        guard let since else {
            self.since = now
            return .watching
        }
        let deadline = since &+ Self.lagAfter
        if now < deadline { return .waiting }
        if now - deadline > Self.lagAfter / 2 {
            self.since = now
            return .watching
        }
        return .lags
    }

    /// When the server counts as lagging if the output does not drain before.
    var deadline: UInt64? { since.map { $0 &+ Self.lagAfter } }

    /// The connection is closed or starts over.
    mutating func reset() { since = nil }
}
