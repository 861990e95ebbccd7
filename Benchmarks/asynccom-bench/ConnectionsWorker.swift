import Glibc
import ArgumentParser
import AsyncComCore
import AsyncComEventLoop

/// `asynccom-bench connections-worker`: one process's share of the `connections` scenario. `ManyConnections`
/// starts as many of these as the open-file limit needs (each connection is a file in this process too) and
/// drives them over stdin/stdout:
///
///     worker -> `connected`             every connection is established
///     parent -> `go`                    send one request on each (spread over `--spread-nanos`)
///     worker -> `late N,N,...`          per connection: latency beyond the wait, ns
///     worker -> `client N,N,...`        per connection: reply in this host's kernel -> read by the worker, ns
///     worker -> `rss BYTES`             the worker's peak resident memory
///
/// Not for users (hidden from `--help`); its errors end it with status 1 and a line on stderr.
struct ConnectionsWorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connections-worker",
        abstract: "One process's connections of the `connections` scenario (started by `run connections`).",
        shouldDisplay: false)

    @Option(help: "Server port on 127.0.0.1.") var port: UInt16
    @Option(help: "Connections to open.") var count: Int
    @Option(help: "Scenario-wide index of the first connection (picks its source address and request id).") var first = 0
    @Option(help: "Loopback source addresses 127.0.0.2 and up, used in turn.") var sources = 8
    @Option(help: "The item each connection asks for.") var item: String
    @Option(help: "Its response in the map.") var response: Int64
    @Option(help: "Its wait in the map, ns.") var waitNanos: UInt64
    @Option(help: "Send the requests evenly over this many ns (0: all at once).") var spreadNanos: UInt64 = 0

    func run() throws {
        _ = ManyConnections.raiseFileLimit(to: count + 256)
        let set = try ConnectionSet()
        try set.connect(count: count, first: first, sources: sources, port: port)
        print("connected")
        fflush(nil)  // all streams (stdout itself is not concurrency-safe to name)
        guard let go = readLine(), go == "go" else { throw ManyConnections.Failure(description: "expected `go` on stdin") }
        let answered = try set.ask(first: first, item: item, response: response, waitNanos: waitNanos,
                                   spreadNanos: spreadNanos)
        print("late " + answered.lateNanos.map(String.init).joined(separator: ","))
        print("client " + answered.clientNanos.map(String.init).joined(separator: ","))
        print("rss \(ProcessMetrics.peakRSS(pid: getpid()) ?? 0)")
        fflush(nil)  // all streams (stdout itself is not concurrency-safe to name)
    }
}

/// One process's connections to a server, on an event loop of its own: opened from several loopback source
/// addresses (127.0.0.2, .3, ...), so that their count is not bounded by one address's ephemeral ports
/// (28,232 by default); `IP_BIND_ADDRESS_NO_PORT` leaves the port to `connect`, which only needs the 4-tuple to
/// be unique. Then one request each, timed.
final class ConnectionSet {
    final class Peer {
        let fd: Int32
        var watcher: IOWatcher?
        var connected = false
        var sentNanos: UInt64 = 0
        var latencyNanos: UInt64 = 0
        var reply: [UInt8] = []
        var clientNanos: UInt64 = 0
        init(fd: Int32) { self.fd = fd }
    }

    /// Connects that may be in progress at once: the listen backlog holds them without SYN retransmits.
    static let connectsInFlight = 256

    let loop: EventLoop
    private(set) var peers: [Peer] = []
    private var connecting = 0
    private var connected = 0
    private var answered = 0
    private var failure: String?
    private let input = ByteBuffer(capacity: 256)

    init() throws { loop = try EventLoop() }

    deinit {
        for p in peers {
            p.watcher?.cancel()
            close(p.fd)
        }
    }

    /// Opens `count` connections to 127.0.0.1:`port`, at most `connectsInFlight` at a time; returns when all are
    /// established.
    func connect(count: Int, first: Int, sources: Int, port: UInt16) throws {
        peers.reserveCapacity(count)
        var next = 0
        try runLoop(until: {
            while next < count && connecting < ConnectionSet.connectsInFlight {
                do { try open(source: 2 + UInt32((first + next) % sources), port: port) } catch { failure = failure ?? "\(error)" }
                next += 1
            }
            return connected == count
        }, within: 120, what: "connecting \(count)")
    }

    private func open(source: UInt32, port: UInt16) throws {
        let i = peers.count
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ManyConnections.Failure(description: "socket: \(String(cString: strerror(errno))) after \(i) connections") }
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_IP), 24 /* IP_BIND_ADDRESS_NO_PORT */, &on, socklen_t(MemoryLayout<Int32>.size))
        let bound = Loopback.bind(fd, to: source)
        let started = bound == 0 ? Loopback.connect(fd, to: port) : -1
        guard bound == 0, started == 0 || errno == EINPROGRESS else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw ManyConnections.Failure(description: "connection \(i): \(bound != 0 ? "bind" : "connect"): \(e)")
        }
        let peer = Peer(fd: fd)
        peers.append(peer)
        Socket.enableReceiveTimestamps(fd: fd)
        connecting += 1
        peer.watcher = IOWatcher(loop: loop, fd: fd) { [unowned self] readable, writable in
            self.handle(peer, readable: readable, writable: writable)
        }
        peer.watcher?.setInterest(read: false, write: true)
    }

    private func handle(_ peer: Peer, readable: Bool, writable: Bool) {
        if !peer.connected {
            guard writable else { return }
            let error = Socket.connectResult(fd: peer.fd)
            if error != 0 { failure = failure ?? "connect: \(String(cString: strerror(error)))" }
            peer.connected = true
            connecting -= 1
            connected += 1
            peer.watcher?.setInterest(read: false, write: false)
            return
        }
        guard readable else { return }
        input.clear()
        let got: (count: Int, stamp: Int64)?
        do {
            got = try Socket.readStamped(fd: peer.fd, into: input, chunk: 256)
        } catch {
            failure = failure ?? "connection \(peer.fd): \(error)"
            return
        }
        guard let got else { return }
        if got.count == 0 {
            failure = failure ?? "connection closed by the server before its reply"
            peer.watcher?.setInterest(read: false, write: false)
            return
        }
        peer.reply += input.readableView
        if got.stamp > 0 { peer.clientNanos = UInt64(max(EventLoop.realtimeNanos() - got.stamp, 0)) }
        if peer.reply.last == 0x0A {
            peer.latencyNanos = EventLoop.monotonicNanos() &- peer.sentNanos
            answered += 1
            peer.watcher?.setInterest(read: false, write: false)
        }
    }

    /// Sends `REQ <first + i> <item>` on connection i, spread evenly over `spreadNanos` (0: all at once), and
    /// waits for every reply; checks each. Returns per connection the latency beyond `waitNanos` and the reply's
    /// time in this process's kernel.
    func ask(first: Int, item: String, response: Int64, waitNanos: UInt64, spreadNanos: UInt64) throws
        -> (lateNanos: [Int64], clientNanos: [UInt64])
    {
        let start = EventLoop.monotonicNanos()
        let count = UInt64(peers.count)
        var next = 0
        func sendDue() {
            let now = EventLoop.monotonicNanos()
            while next < peers.count && start &+ spreadNanos * UInt64(next) / count <= now {
                let peer = peers[next]
                let line = Array("REQ \(first + next) \(item)\n".utf8)
                peer.sentNanos = EventLoop.monotonicNanos()
                let n = line.withUnsafeBytes { send(peer.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n != line.count { failure = failure ?? "connection \(first + next): send failed" }
                peer.watcher?.setInterest(read: true, write: false)
                next += 1
            }
        }
        try runLoop(until: { sendDue(); return answered == peers.count },
                    within: 60 + Double(waitNanos + spreadNanos) / 1e9, what: "answers to \(peers.count) requests",
                    tickNanos: 1_000_000)
        var late: [Int64] = []
        late.reserveCapacity(peers.count)
        for (i, peer) in peers.enumerated() {
            let expected = "RES \(first + i) \(response)\n"
            guard peer.reply == Array(expected.utf8) else {
                throw ManyConnections.Failure(description: "connection \(first + i): got '\(String(decoding: peer.reply, as: UTF8.self))', expected '\(expected.dropLast())'")
            }
            late.append(Int64(bitPattern: peer.latencyNanos) - Int64(waitNanos))
        }
        return (late, peers.map(\.clientNanos))
    }

    private func runLoop(until done: () -> Bool, within seconds: Double, what: String, tickNanos: UInt64 = 10_000_000) throws {
        let deadline = EventLoop.monotonicNanos() &+ seconds.secondsAsNanos
        let tick = EventTimer(loop: loop) {}
        defer { tick.cancel() }
        while !done() {
            if let failure { throw ManyConnections.Failure(description: failure) }
            guard EventLoop.monotonicNanos() < deadline else { throw ManyConnections.Failure(description: "\(what): not done in \(seconds) s") }
            tick.schedule(afterNanos: tickNanos)
            loop.runOnce()
        }
    }
}
