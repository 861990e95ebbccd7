/// Whether one connection's server has stalled: a connection with work pending (requests in flight or bytes
/// not yet written) that hears nothing for a whole request timeout. The server is then treated as dead for
/// this connection, whatever it does with the bytes: requests never handed to the socket are judged by the
/// same clock as those sent, so no accepted command waits without a deadline. Pure: `now` is passed in.
struct SilenceWatch: Equatable {
    /// Since when work has been pending with nothing heard; nil while nothing is pending.
    private(set) var since: UInt64?

    init() {}

    /// Work was handed to the connection (a request queued for writing).
    mutating func workPending(now: UInt64) {
        if since == nil { since = now }
    }

    /// Bytes came from the server; `pending`: work is still outstanding after handling them.
    mutating func heard(now: UInt64, pending: Bool) {
        since = pending ? now : nil
    }

    /// The connection is idle or closed.
    mutating func reset() { since = nil }

    /// When the connection counts as stalled if nothing is heard meanwhile.
    func deadline(timeoutNanos: UInt64) -> UInt64? { since.map { $0 &+ timeoutNanos } }

    func isStalled(now: UInt64, timeoutNanos: UInt64) -> Bool {
        guard let d = deadline(timeoutNanos: timeoutNanos) else { return false }
        return now >= d
    }
}

/// Whether a server is up, coming back, or down, decided from events and `now` alone (the engine turns the
/// verdicts into failover). Pure.
///
/// - Up: at least one connection answered HELLO and is not lost.
/// - Not up yet / again: connections are being (re)established with backoff; it counts as down when it has not
///   come back `connectTimeout` after the start of the job or after its last ready connection was lost (an
///   attempt under way then gets to finish), or at once after `retries + 1` strikes.
/// - A strike is an attempt that took a whole request timeout and failed (a stalled connection, a HELLO that
///   timed out or was refused, a connect that timed out). Strikes reset only when the server answers a request:
///   a server that answers HELLO and then black-holes requests keeps its strikes.
/// - A stalled server whose work another server can take is down at once: its work fails over.
///
/// The longest a server that stalls forever keeps its work, from its last reply: `T + min(R x (T + 1 s), C + T)`
/// (T request timeout, R retries, C connect timeout, 1 s the longest reconnect backoff): one T until the stall
/// shows, then R more strikes of at most a backoff and a T each, or C and the attempt under way. See README.
struct ServerHealth: Equatable {
    enum Verdict: Equatable {
        case none
        /// The server is down now: fail its work over, or fail it.
        case down
    }

    let connectTimeoutNanos: UInt64
    let retries: Int
    private(set) var readyCount = 0
    private(set) var isDown = false
    private(set) var everUp = false
    private(set) var strikes = 0
    /// When the server counts as down unless it comes back (armed while it is neither up nor down).
    private(set) var downDeadline: UInt64?
    /// The deadline passed while an attempt was under way: down if that attempt fails too.
    private(set) var downPending = false

    init(connectTimeoutNanos: UInt64, retries: Int) {
        self.connectTimeoutNanos = connectTimeoutNanos
        self.retries = retries
    }

    var isUp: Bool { readyCount > 0 }

    /// Down after more strikes than retries: given up for the rest of the job.
    var isDead: Bool { isDown && strikes > retries }

    /// The job starts: the server has `connectTimeout` to come up.
    mutating func start(now: UInt64) {
        downDeadline = now &+ connectTimeoutNanos
    }

    /// A connection answered HELLO. Returns whether the server was down until now.
    mutating func connectionReady() -> Bool {
        let wasDown = isDown
        readyCount += 1
        isDown = false
        everUp = true
        downDeadline = nil
        downPending = false
        return wasDown
    }

    /// The server answered a request: it is alive, strikes are forgiven.
    mutating func answered() { strikes = 0 }

    /// A ready connection was lost. `stalled`: closed because it heard nothing for a request timeout;
    /// `othersUp`: another server is up to take the work.
    mutating func connectionLost(now: UInt64, stalled: Bool, othersUp: Bool) -> Verdict {
        readyCount -= 1
        if stalled { strikes += 1 }
        guard readyCount == 0, !isDown else { return .none }
        if stalled && (othersUp || strikes > retries) { return markDown() }
        // Last seen up just now: it gets connectTimeout from here to come back.
        downDeadline = now &+ connectTimeoutNanos
        return .none
    }

    /// A connect or handshake attempt failed. `strike`: it took a whole timeout, or the server refused the
    /// handshake; `attemptsInProgress`: other attempts to this server are still under way.
    mutating func attemptFailed(strike: Bool, attemptsInProgress: Bool) -> Verdict {
        guard !isUp, !isDown else { return .none }
        if strike {
            strikes += 1
            if strikes > retries { return markDown() }
        }
        if downPending && !attemptsInProgress { return markDown() }
        return .none
    }

    /// The down deadline may have passed (the engine's timer for `downDeadline` fired).
    mutating func deadlinePassed(now: UInt64, attemptsInProgress: Bool) -> Verdict {
        guard !isUp, !isDown, let d = downDeadline, now >= d else { return .none }
        downDeadline = nil
        if attemptsInProgress {
            // An attempt under way (bounded by the request timeout) gets to finish: a server that is just being
            // reached is not declared down under its feet.
            downPending = true
            return .none
        }
        return markDown()
    }

    private mutating func markDown() -> Verdict {
        isDown = true
        downPending = false
        downDeadline = nil
        return .down
    }
}
