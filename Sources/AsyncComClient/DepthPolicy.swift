/// A server's limits from its HELLO reply (absent or non-positive values mean "no limit").
struct ServerLimits: Equatable {
    var maxItems: Int?
    var maxLine: Int?
    var maxInflight: Int?
    /// The server's reactor count and the one serving this connection (`reactors=`, `reactor=`).
    var reactors: Int?
    var reactor: Int?

    init(maxItems: Int? = nil, maxLine: Int? = nil, maxInflight: Int? = nil, reactors: Int? = nil, reactor: Int? = nil) {
        self.maxItems = maxItems
        self.maxLine = maxLine
        self.maxInflight = maxInflight
        self.reactors = reactors
        self.reactor = reactor
    }

    /// Reads `max_items`, `max_line`, `max_inflight`, `reactors` and `reactor`.
    init(helloFields fields: [String: String]) {
        func positive(_ key: String) -> Int? {
            guard let text = fields[key], let v = Int(text), v > 0 else { return nil }
            return v
        }
        var reactor: Int?
        if let text = fields["reactor"], let v = Int(text), v >= 0 { reactor = v }
        self.init(maxItems: positive("max_items"), maxLine: positive("max_line"), maxInflight: positive("max_inflight"),
                  reactors: positive("reactors"), reactor: reactor)
    }
}

/// The one place that turns the configuration (batch, window cap, in-flight budget) and a server's HELLO limits
/// into what a connection sends: commands per request and requests in flight. Pure.
///
/// Without an explicit window the depth is adaptive: a connection keeps as many commands in flight as its
/// server admits (`max_inflight`), and the whole job at most `maxInflight` (the client's memory budget, which
/// `capacity` enforces). An explicit window caps each connection's requests in flight on top of that.
struct DepthPolicy: Equatable {
    /// Configured commands per request.
    let batch: Int
    /// Requests in flight per connection at most; nil: as many as the server admits.
    let windowCap: Int?
    /// Commands in flight (pulled, not yet answered) in the whole job at most.
    let maxInflight: Int

    init(batch: Int, windowCap: Int?, maxInflight: Int) {
        self.batch = batch
        self.windowCap = windowCap
        self.maxInflight = maxInflight
    }

    init(_ configuration: ClientConfiguration) {
        self.init(batch: configuration.batch, windowCap: configuration.window, maxInflight: configuration.maxInflight)
    }

    /// Batch at most `max_items`; window such that `window x batch` fits `max_inflight` and the budget (at least
    /// 1), and at most the explicit window.
    func clamp(_ limits: ServerLimits) -> (batch: Int, window: Int) {
        var b = batch
        if let m = limits.maxItems { b = min(b, m) }
        let admitted = min(limits.maxInflight ?? Int.max, maxInflight)
        var w = max(1, admitted / b)
        if let cap = windowCap { w = min(w, cap) }
        return (b, w)
    }

    /// Before a server's HELLO (or for a server that announces no limits).
    var unlimited: (batch: Int, window: Int) { clamp(ServerLimits()) }

    /// Commands the engine may hold (queued, batching or in flight), given what the connections of the servers
    /// that are not down hold (`window x batch` each): never more than the budget.
    func capacity(connectionCommands: Int) -> Int { min(connectionCommands, maxInflight) }

    /// Connections one server needs for its share of the budget when each admits `perConnection` commands in
    /// requests of `batch`. A window holds whole requests, so a connection may hold up to `batch - 1` fewer than
    /// the share it was sized for: that remainder does not earn a connection (it once did: `--max-inflight 1000`
    /// with batch 16 made a window of 62 requests, 992 commands, and a second connection for the other 8).
    func connectionsForBudget(servers: Int, perConnection: Int, batch: Int) -> Int {
        let share = max(1, maxInflight / max(1, servers))
        let needed = max(1, share - (max(1, batch) - 1))
        let per = max(1, perConnection)
        return (needed + per - 1) / per
    }
}
