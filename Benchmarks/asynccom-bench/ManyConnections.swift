#if canImport(Glibc)
import Glibc
#endif
import AsyncComCore
import AsyncComEventLoop

/// Many concurrent connections to one server, each with one request in flight: how fast the server accepts
/// them, what an idle connection costs it, and whether every reply still comes on time.
///
/// Connections come from several loopback source addresses (127.0.0.2, .3, ...), so that their count is not
/// bounded by one address's ephemeral ports (28,232 by default); `IP_BIND_ADDRESS_NO_PORT` leaves the port to
/// `connect`, which only needs the 4-tuple to be unique.
enum ManyConnections {
    struct Failure: Error, CustomStringConvertible { let description: String }

    struct Figures {
        /// Connections the server accepted per second (first connect -> STATS shows them all).
        var acceptsPerSecond: Double
        /// Server resident memory per idle connection (after accepting all, before any request), bytes.
        var rssPerConnection: Double
        /// The same once every connection had its request answered (buffers used, now idle again).
        var rssPerConnectionAfter: Double
        /// Lateness of the replies (latency beyond the wait), ms: p50, p99, max.
        var lateness: (p50: Double, p99: Double, max: Double)
        var seconds: Double
        var connections: Int
        /// Per connection: its reply's arrival in this host's kernel -> this bench reading it.
        var clientNanos: [UInt64]
    }

    /// Connects that may be in progress at once: the listen backlog holds them without SYN retransmits.
    static let connectsInFlight = 256

    /// Makes room for `descriptors` open files in this process and its children (the server): raises the soft
    /// limit, and the hard one when allowed (CAP_SYS_RESOURCE). Returns the limit now in force.
    static func raiseFileLimit(to descriptors: Int) -> Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let want = rlim_t(descriptors)
        if limit.rlim_cur >= want { return Int(limit.rlim_cur) }
        var raised = limit
        raised.rlim_cur = want
        if raised.rlim_max < want { raised.rlim_max = want }
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return descriptors }
        raised = limit
        raised.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return Int(limit.rlim_cur)
    }

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

    /// Runs `count` connections against `port` on 127.0.0.1; `item` must be in the server's map with `wait`
    /// and `response`.
    static func run(port: UInt16, serverPID: Int32, count: Int, sources: Int, item: String, waitNanos: UInt64,
                    response: Int64) throws -> Figures {
        let loop = try EventLoop()
        var peers: [Peer] = []
        peers.reserveCapacity(count)
        defer {
            for p in peers {
                p.watcher?.cancel()
                close(p.fd)
            }
        }
        let rssBefore = ProcessMetrics.currentRSS(pid: serverPID) ?? 0
        let start = EventLoop.monotonicNanos()
        var connecting = 0
        var connected = 0
        var answered = 0
        var failure: String?
        let input = ByteBuffer(capacity: 256)

        func open(_ i: Int) throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno))) after \(i) connections") }
            var on: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_IP), 24 /* IP_BIND_ADDRESS_NO_PORT */, &on, socklen_t(MemoryLayout<Int32>.size))
            let bound = Loopback.bind(fd, to: 2 + UInt32(i % sources))
            let started = bound == 0 ? Loopback.connect(fd, to: port) : -1
            guard bound == 0, started == 0 || errno == EINPROGRESS else {
                let e = String(cString: strerror(errno))
                close(fd)
                throw Failure(description: "connection \(i): \(bound != 0 ? "bind" : "connect"): \(e)")
            }
            let peer = Peer(fd: fd)
            peers.append(peer)
            Socket.enableReceiveTimestamps(fd: fd)
            connecting += 1
            peer.watcher = IOWatcher(loop: loop, fd: fd) { readable, writable in
                if !peer.connected {
                    guard writable else { return }
                    let error = Socket.connectResult(fd: fd)
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
                    got = try Socket.readStamped(fd: fd, into: input, chunk: 256)
                } catch {
                    failure = failure ?? "connection \(fd): \(error)"
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
            peer.watcher?.setInterest(read: false, write: true)
        }

        func runLoop(until done: () -> Bool, within seconds: Double, what: String) throws {
            let deadline = EventLoop.monotonicNanos() &+ seconds.secondsAsNanos
            let tick = EventTimer(loop: loop) {}
            defer { tick.cancel() }
            while !done() {
                if let failure { throw Failure(description: failure) }
                guard EventLoop.monotonicNanos() < deadline else { throw Failure(description: "\(what): not done in \(seconds) s") }
                tick.schedule(afterNanos: 10_000_000)
                loop.runOnce()
            }
        }

        // Connect, at most `connectsInFlight` at a time.
        var next = 0
        try runLoop(until: {
            while next < count && connecting < connectsInFlight {
                do { try open(next) } catch { failure = failure ?? "\(error)" }
                next += 1
            }
            return connected == count
        }, within: 120, what: "connecting \(count)")
        // Accepted by the server (it counts a connection when a reactor accepts it; the probe is one more).
        let wanted = UInt64(count + 1)
        while (try ServerStatsProbe.read(.tcp(host: "127.0.0.1", port: port))["connections"] ?? 0) < wanted {
            guard EventLoop.monotonicNanos() &- start < 120_000_000_000 else { throw Failure(description: "server did not accept \(count) connections") }
            usleep(10_000)
        }
        let acceptSeconds = Double(EventLoop.monotonicNanos() &- start) / 1e9
        let rssIdle = ProcessMetrics.currentRSS(pid: serverPID) ?? 0

        // One request on each.
        for (i, peer) in peers.enumerated() {
            let line = Array("REQ \(i) \(item)\n".utf8)
            peer.sentNanos = EventLoop.monotonicNanos()
            let n = line.withUnsafeBytes { send(peer.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n == line.count else { throw Failure(description: "connection \(i): send failed") }
            peer.watcher?.setInterest(read: true, write: false)
        }
        try runLoop(until: { answered == count }, within: 60 + Double(waitNanos) / 1e9,
                    what: "answers to \(count) requests")
        let rssAfter = ProcessMetrics.currentRSS(pid: serverPID) ?? 0
        var late: [Int64] = []
        late.reserveCapacity(count)
        for (i, peer) in peers.enumerated() {
            let expected = "RES \(i) \(response)\n"
            guard peer.reply == Array(expected.utf8) else {
                throw Failure(description: "connection \(i): got '\(String(decoding: peer.reply, as: UTF8.self))', expected '\(expected.dropLast())'")
            }
            late.append(Int64(bitPattern: peer.latencyNanos) - Int64(waitNanos))
        }
        late.sort()
        func ms(_ v: Int64) -> Double { Double(v) / 1e6 }
        return Figures(
            acceptsPerSecond: Double(count) / acceptSeconds,
            rssPerConnection: Double(rssIdle - rssBefore) / Double(count),
            rssPerConnectionAfter: Double(rssAfter - rssBefore) / Double(count),
            lateness: (ms(late[count / 2]), ms(late[min(count - 1, count * 99 / 100)]), ms(late[count - 1])),
            seconds: Double(EventLoop.monotonicNanos() &- start) / 1e9, connections: count,
            clientNanos: peers.map(\.clientNanos))
    }
}
