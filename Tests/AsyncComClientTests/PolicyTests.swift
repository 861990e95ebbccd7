@testable import AsyncComClient
import Testing

/// The engine's decisions as pure state machines, in virtual time: no sockets, no clocks, no sleeps.
@Suite struct DepthPolicyTests {
    @Test func helloFieldsAreRead() {
        let limits = ServerLimits(helloFields: ["max_items": "8", "max_line": "4096", "max_inflight": "64", "reactors": "2",
                                                "reactor": "0", "other": "x"])
        #expect(limits == ServerLimits(maxItems: 8, maxLine: 4096, maxInflight: 64, reactors: 2, reactor: 0))
        // Missing or nonsense fields mean no limit.
        #expect(ServerLimits(helloFields: ["max_items": "-3", "max_inflight": "lots", "reactor": "-1"]) == ServerLimits())
    }

    @Test func explicitWindowIsACapOnTopOfTheServersLimits() {
        let limits = ServerLimits(maxItems: 8, maxLine: 4096, maxInflight: 64)
        let unlimitedBudget = 1 << 30
        #expect(DepthPolicy(batch: 16, windowCap: 256, maxInflight: unlimitedBudget).clamp(limits) == (8, 8))
        #expect(DepthPolicy(batch: 4, windowCap: 2, maxInflight: unlimitedBudget).clamp(limits) == (4, 2))
        // A batch larger than max_inflight still gets a window of one.
        #expect(DepthPolicy(batch: 64, windowCap: 256, maxInflight: unlimitedBudget).clamp(ServerLimits(maxItems: 1000, maxInflight: 10)) == (64, 1))
        #expect(DepthPolicy(batch: 16, windowCap: 256, maxInflight: unlimitedBudget).clamp(ServerLimits()) == (16, 256))
    }

    @Test func adaptiveDepthFillsWhatTheServerAdmitsWithinTheBudget() {
        let policy = DepthPolicy(batch: 16, windowCap: nil, maxInflight: 4 << 20)
        // A server that admits 1 Mi commands per connection (the asynccom default before 8 Mi).
        #expect(policy.clamp(ServerLimits(maxItems: 1024, maxInflight: 1 << 20)) == (16, 65_536))
        // A budget smaller than what the server admits binds instead.
        #expect(DepthPolicy(batch: 16, windowCap: nil, maxInflight: 1000).clamp(ServerLimits(maxInflight: 1 << 20)) == (16, 62))
        // Before HELLO: the budget alone.
        #expect(policy.unlimited == (16, (4 << 20) / 16))
        // The engine holds at most the budget, whatever its connections could take.
        #expect(policy.capacity(connectionCommands: 10 << 20) == 4 << 20)
        #expect(policy.capacity(connectionCommands: 1000) == 1000)
    }

    @Test func connectionsWantedWhenMaxInflightPerConnectionBinds() {
        let policy = DepthPolicy(batch: 16, windowCap: nil, maxInflight: 4 << 20)
        #expect(policy.connectionsForBudget(servers: 1, perConnection: 1 << 20, batch: 16) == 4)
        #expect(policy.connectionsForBudget(servers: 2, perConnection: 1 << 20, batch: 16) == 2)
        #expect(policy.connectionsForBudget(servers: 1, perConnection: 5 << 20, batch: 16) == 1)
        #expect(policy.connectionsForBudget(servers: 3, perConnection: 1 << 20, batch: 16) == 2)
        // A window holds whole requests: the budget's last partial request earns no connection (found from
        // outside: --max-inflight 1000, batch 16 -> 62 requests of 16 = 992 commands, and a second connection).
        let small = DepthPolicy(batch: 16, windowCap: nil, maxInflight: 1000)
        let (b, w) = small.clamp(ServerLimits(maxInflight: 1 << 23))
        #expect(small.connectionsForBudget(servers: 1, perConnection: w * b, batch: b) == 1)
        let wide = DepthPolicy(batch: 100, windowCap: nil, maxInflight: 1 << 23)
        let (b2, w2) = wide.clamp(ServerLimits(maxInflight: 1 << 23))
        #expect(wide.connectionsForBudget(servers: 1, perConnection: w2 * b2, batch: b2) == 1)
        // A server that admits less than the share still gets more.
        #expect(small.connectionsForBudget(servers: 1, perConnection: 496, batch: 16) == 2)
    }

    @Test func theConfigurationOwnsTheDefaults() {
        let c = ClientConfiguration()
        #expect(c.window == nil && c.connectionsPerServer == nil)
        #expect(c.maxInflight == ClientConfiguration.defaultMaxInflight)
        #expect(DepthPolicy(c) == DepthPolicy(batch: ClientConfiguration.defaultBatch, windowCap: nil, maxInflight: c.maxInflight))
    }
}

@Suite struct ConnectionPlanTests {
    let r0 = ServerLimits(maxInflight: 1 << 20, reactors: 2, reactor: 0)
    let r1 = ServerLimits(maxInflight: 1 << 20, reactors: 2, reactor: 1)

    @Test func oneConnectionWhileTheServerKeepsUp() {
        var plan = ConnectionPlan(fixed: nil, maxConnections: 256)
        #expect(plan.initial == 1)
        // The server has two reactors; the first connection is kept where it lands and nothing more is opened.
        #expect(plan.handshake(limits: r1) == .keep(open: 0))
        #expect(plan.settled && !plan.coverageFailed && plan.kept == 1 && plan.coveredCount == 1 && plan.reactors == 2)
        #expect(plan.grow(wanted: 1) == 0)
    }

    @Test func aLaggingServerGetsEveryReactorCoveredDuplicatesRetired() {
        var plan = ConnectionPlan(fixed: nil, maxConnections: 256)
        #expect(plan.handshake(limits: r0) == .keep(open: 0))
        #expect(plan.mayCover)
        #expect(plan.serverLagged() == 1)
        #expect(!plan.settled && !plan.mayCover)
        // Landed on reactor 0 again: closed, another one tried.
        #expect(plan.handshake(limits: r0) == .retire(open: 1))
        #expect(plan.handshake(limits: r1) == .keep(open: 0))
        #expect(plan.settled && !plan.coverageFailed && plan.kept == 2 && plan.retired == 1 && plan.coveredCount == 2)
        // Once per job: no more watching (a timer armed for a passed lag deadline would fire in a loop).
        #expect(!plan.mayCover && plan.serverLagged() == 0)
    }

    @Test func moreConnectionsWhenMaxInflightBinds() {
        var plan = ConnectionPlan(fixed: nil, maxConnections: 256)
        #expect(plan.handshake(limits: r1) == .keep(open: 0))
        #expect(plan.grow(wanted: 4) == 3)
        // Connections opened and not handshaken yet count.
        #expect(plan.grow(wanted: 4) == 0)
        // The extra ones are kept wherever they land, and nothing more is opened.
        #expect(plan.handshake(limits: r1) == .keep(open: 0))
        #expect(plan.handshake(limits: r1) == .keep(open: 0))
        #expect(plan.handshake(limits: r1) == .keep(open: 0))
        #expect(plan.kept == 4 && plan.pending == 0 && plan.coveredCount == 1)
        // The budget's wish is bounded.
        #expect(plan.grow(wanted: 1000) == ConnectionPlan.maxBudgetConnections - 4)
        // Not while coverage is under way.
        var covering = ConnectionPlan(fixed: nil, maxConnections: 256)
        _ = covering.handshake(limits: r0)
        #expect(covering.serverLagged() == 1)
        #expect(covering.grow(wanted: 4) == 0)
        #expect(covering.handshake(limits: r1) == .keep(open: 0))
        #expect(covering.grow(wanted: 4) == 2)
    }

    @Test func coverageAttemptsAreBoundedAndTheFailureIsKnown() {
        var plan = ConnectionPlan(fixed: nil, maxConnections: 256)
        let r0 = ServerLimits(reactors: 2, reactor: 0)
        #expect(plan.handshake(limits: r0) == .keep(open: 0))
        #expect(plan.serverLagged() == 1)
        var decisions: [ConnectionPlan.Decision] = []
        while !plan.settled { decisions.append(plan.handshake(limits: r0)) }
        #expect(plan.coverageFailed && plan.coveredCount == 1 && plan.kept == 1)
        #expect(plan.opened == 1 + ConnectionPlan.attemptsPerReactor * 2)
        #expect(decisions.count == ConnectionPlan.attemptsPerReactor * 2)
        #expect(decisions.last == .retire(open: 0))
    }

    @Test func fixedCountAndSingleReactorServers() {
        var fixed = ConnectionPlan(fixed: 3, maxConnections: 256)
        #expect(fixed.initial == 3)
        #expect(fixed.handshake(limits: ServerLimits(reactors: 4, reactor: 0)) == .keep(open: 0))
        #expect(!fixed.mayCover)
        #expect(fixed.grow(wanted: 9) == 0)
        #expect(fixed.serverLagged() == 0)
        var single = ConnectionPlan(fixed: nil, maxConnections: 256)
        #expect(single.handshake(limits: ServerLimits(reactors: 1, reactor: 0)) == .keep(open: 0))
        #expect(single.settled && !single.coverageFailed)
        // Every reactor has its connection already: a lagging server gets no more.
        #expect(single.serverLagged() == 0)
        // No reactor fields at all (another server implementation): one connection, more only for the budget.
        var other = ConnectionPlan(fixed: nil, maxConnections: 256)
        #expect(other.handshake(limits: ServerLimits(maxInflight: 1000)) == .keep(open: 0))
        #expect(other.serverLagged() == 0)
        #expect(other.grow(wanted: 3) == 2)
        // A connection limit of one: no coverage.
        var one = ConnectionPlan(fixed: nil, maxConnections: 1)
        #expect(one.handshake(limits: r0) == .keep(open: 0))
        #expect(!one.mayCover && one.serverLagged() == 0)
        // A Unix socket, which one reactor serves though HELLO counts them all (found from outside: a lagging
        // server there got a hunt for its other reactors and a false "reached 1 of its 2 reactors").
        var unix = ConnectionPlan(fixed: nil, maxConnections: 256, coverable: false)
        #expect(unix.handshake(limits: r0) == .keep(open: 0))
        #expect(!unix.mayCover && unix.serverLagged() == 0 && !unix.coverageFailed)
        // A reactor count without the connection's reactor: nothing to tell a duplicate by, so no coverage.
        var unnamed = ConnectionPlan(fixed: nil, maxConnections: 256)
        #expect(unnamed.handshake(limits: ServerLimits(reactors: 2)) == .keep(open: 0))
        #expect(!unnamed.mayCover && unnamed.serverLagged() == 0)
    }

    @Test func noCoverageWhileBudgetConnectionsAreOnTheirWay() {
        var plan = ConnectionPlan(fixed: nil, maxConnections: 256)
        #expect(plan.handshake(limits: r0) == .keep(open: 0))
        #expect(plan.grow(wanted: 3) == 2)
        // Their handshakes would be taken for coverage attempts (and retired, then reopened by the budget).
        #expect(!plan.mayCover && plan.serverLagged() == 0)
        #expect(plan.handshake(limits: r0) == .keep(open: 0))
        #expect(plan.handshake(limits: r0) == .keep(open: 0))
        #expect(plan.mayCover && plan.serverLagged() == 1)
        #expect(plan.handshake(limits: r1) == .keep(open: 0))
        #expect(plan.kept == 4 && plan.coveredCount == 2 && plan.settled)
    }
}

@Suite struct OutputLagTests {
    let ms: UInt64 = 1_000_000

    @Test func theServerLagsOnlyAfterTheOutputStaysUnwrittenForLagAfter() {
        let after = OutputLag.lagAfter
        var lag = OutputLag()
        #expect(lag.deadline == nil)
        // The first unwritten look starts the watch; later ones do not move it.
        let first = lag.unwritten(now: 1000 * ms)
        let again = lag.unwritten(now: 1010 * ms)
        #expect(first == .watching && again == .waiting && lag.deadline == 1000 * ms + after)
        let early = lag.unwritten(now: 1000 * ms + after - 1)
        let due = lag.unwritten(now: 1000 * ms + after)
        #expect(early == .waiting && due == .lags)
        // A write that empties the output starts over: a scheduler tick or a host's pause is not lag.
        lag.drained()
        #expect(lag.deadline == nil)
        let restart = lag.unwritten(now: 2000 * ms)
        lag.drained()
        let second = lag.unwritten(now: 2000 * ms + after / 2)
        let notYet = lag.unwritten(now: 2000 * ms + after)
        #expect(restart == .watching && second == .watching && notYet == .waiting)
        lag.reset()
        #expect(lag.deadline == nil)
    }

    @Test func aLookTooLateAfterTheDeadlineStartsOver() {
        // This client's loop was held up: what it sees now says nothing about the server.
        let after = OutputLag.lagAfter
        var lag = OutputLag()
        _ = lag.unwritten(now: 1000 * ms)
        let late = lag.unwritten(now: 1000 * ms + after + after / 2 + 1)
        #expect(late == .watching && lag.deadline == 1000 * ms + after + after / 2 + 1 + after)
        // Just within half a lag after the deadline still counts.
        var onTime = OutputLag()
        _ = onTime.unwritten(now: 1000 * ms)
        #expect(onTime.unwritten(now: 1000 * ms + after + after / 2) == .lags)
    }
}

@Suite struct SilenceWatchTests {
    let t: UInt64 = 1_000_000_000

    @Test func stalledOnlyAfterAWholeTimeoutOfSilenceWithWorkPending() {
        var w = SilenceWatch()
        #expect(w.deadline(timeoutNanos: t) == nil && !w.isStalled(now: 100 * t, timeoutNanos: t))
        w.workPending(now: 10 * t)
        // More work does not move the deadline: the oldest pending work sets it.
        w.workPending(now: 10 * t + t / 2)
        #expect(w.deadline(timeoutNanos: t) == 11 * t)
        #expect(!w.isStalled(now: 11 * t - 1, timeoutNanos: t))
        #expect(w.isStalled(now: 11 * t, timeoutNanos: t))
        // A reply moves it; an idle connection has none.
        w.heard(now: 10 * t + t / 2, pending: true)
        #expect(w.deadline(timeoutNanos: t) == 11 * t + t / 2)
        w.heard(now: 12 * t, pending: false)
        #expect(w.deadline(timeoutNanos: t) == nil)
    }
}

@Suite struct ServerHealthTests {
    static let second: UInt64 = 1_000_000_000

    /// Plays a server that answered its last reply at 0 and then stalls forever (accepts connections, never
    /// answers): the engine's sequence of events in virtual time. Returns when it is declared down.
    static func timeToDown(timeout: Double, retries: Int, connectTimeout: Double) -> Double {
        let t = timeout.secondsAsNanos, c = connectTimeout.secondsAsNanos
        var health = ServerHealth(connectTimeoutNanos: c, retries: retries)
        health.start(now: 0)
        _ = health.connectionReady()
        health.answered()
        var backoff = Backoff()
        // The connection has work pending since 0 and hears nothing: it stalls at T.
        var now = t
        var downTimer = health.downDeadline
        if health.connectionLost(now: now, stalled: true, othersUp: false) == .down { return Double(now) / 1e9 }
        downTimer = health.downDeadline
        while true {
            // Reconnect after the backoff; the connect succeeds (the kernel's backlog), HELLO times out after T.
            let attemptStart = now + backoff.next()
            if let d = downTimer, d <= attemptStart {
                if health.deadlinePassed(now: d, attemptsInProgress: false) == .down { return Double(d) / 1e9 }
            }
            if let d = downTimer, d > attemptStart, d < attemptStart + t {
                // The deadline passes during the attempt: it gets to finish.
                #expect(health.deadlinePassed(now: d, attemptsInProgress: true) == .none)
            }
            downTimer = health.downDeadline
            now = attemptStart + t
            if health.attemptFailed(strike: true, attemptsInProgress: false) == .down { return Double(now) / 1e9 }
            downTimer = health.downDeadline
        }
    }

    @Test(arguments: [(1.0, 1, 10.0), (1.0, 0, 10.0), (2.0, 3, 3.0), (30.0, 3, 10.0), (0.5, 5, 0.0), (1.0, 1000, 2.0)])
    func aStalledServerIsDownWithinTheStatedBound(timeout: Double, retries: Int, connectTimeout: Double) {
        let bound = timeout + min(Double(retries) * (timeout + 1), connectTimeout + timeout)
        let down = Self.timeToDown(timeout: timeout, retries: retries, connectTimeout: connectTimeout)
        #expect(down <= bound, "down after \(down) s, bound \(bound) s")
        #expect(down >= timeout)
    }

    @Test func stalledServerIsDownAtOnceWhenAnotherCanTakeItsWork() {
        var health = ServerHealth(connectTimeoutNanos: 10 * Self.second, retries: 3)
        health.start(now: 0)
        _ = health.connectionReady()
        #expect(health.connectionLost(now: Self.second, stalled: true, othersUp: true) == .down)
        #expect(health.isDown)
        // It comes back when a connection answers HELLO again.
        #expect(health.connectionReady() == true)
        #expect(health.isUp && !health.isDown)
    }

    @Test func anOrdinaryLossGivesTheServerConnectTimeoutToComeBack() {
        var health = ServerHealth(connectTimeoutNanos: 10 * Self.second, retries: 0)
        health.start(now: 0)
        _ = health.connectionReady()
        #expect(health.connectionLost(now: 5 * Self.second, stalled: false, othersUp: true) == .none)
        #expect(health.downDeadline == 15 * Self.second)
        // Refused reconnects are quick and no strike.
        for _ in 0..<10 { #expect(health.attemptFailed(strike: false, attemptsInProgress: false) == .none) }
        #expect(health.deadlinePassed(now: 15 * Self.second - 1, attemptsInProgress: false) == .none)
        #expect(health.deadlinePassed(now: 15 * Self.second, attemptsInProgress: false) == .down)
    }

    @Test func strikesAreForgivenOnlyByAnAnswer() {
        // A server that answers HELLO and black-holes requests keeps its strikes across reconnects.
        var health = ServerHealth(connectTimeoutNanos: 100 * Self.second, retries: 2)
        health.start(now: 0)
        var now: UInt64 = 0
        var verdicts: [ServerHealth.Verdict] = []
        for _ in 0..<3 {
            _ = health.connectionReady()
            now += Self.second
            verdicts.append(health.connectionLost(now: now, stalled: true, othersUp: false))
        }
        #expect(verdicts == [.none, .none, .down])
        var forgiven = ServerHealth(connectTimeoutNanos: 100 * Self.second, retries: 1)
        forgiven.start(now: 0)
        for _ in 0..<5 {
            _ = forgiven.connectionReady()
            forgiven.answered()
            #expect(forgiven.connectionLost(now: Self.second, stalled: true, othersUp: false) == .none)
        }
    }

    @Test func anAttemptUnderWayWhenTheDeadlinePassesGetsToFinish() {
        var health = ServerHealth(connectTimeoutNanos: Self.second, retries: 3)
        health.start(now: 0)
        #expect(health.deadlinePassed(now: Self.second, attemptsInProgress: true) == .none)
        #expect(health.downPending && !health.isDown)
        #expect(health.attemptFailed(strike: false, attemptsInProgress: false) == .down)
    }
}
