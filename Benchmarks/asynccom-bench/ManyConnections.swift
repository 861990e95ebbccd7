import Glibc
import AsyncComCore
import AsyncComProcess

/// Many concurrent connections to one server port, each with one request in flight: how fast they are accepted,
/// what an idle connection costs the server, and whether every reply still comes on time.
///
/// Each connection is an open file at both ends, and one process may hold at most its hard `RLIMIT_NOFILE` of
/// them (raising it needs CAP_SYS_RESOURCE). When the connections do not fit one process, the scenario does what
/// a deployment would: several `asynccom-server` processes share the port (`--share-port`, SO_REUSEPORT: the
/// kernel spreads the connections over every reactor of every process), and the connections are opened by as
/// many worker processes (`asynccom-bench connections-worker`). Each server also listens on a private port, for
/// its own STATS. Otherwise one server with its defaults and one worker.
enum ManyConnections {
    struct Failure: Error, CustomStringConvertible { let description: String }

    struct Figures {
        /// Connections the servers accepted per second (workers started -> STATS shows them all).
        var acceptsPerSecond: Double
        /// Server resident memory per idle connection (after accepting all, before any request), bytes.
        var rssPerConnection: Double
        /// The same once every connection had its request answered (buffers used, now idle again).
        var rssPerConnectionAfter: Double
        /// Lateness of the replies (latency beyond the wait), ms: p50, p99, max.
        var lateness: (p50: Double, p99: Double, max: Double)
        var seconds: Double
        var connections: Int
        /// Server processes sharing the port, and client (worker) processes.
        var servers: Int
        var workers: Int
        /// Per connection: its reply's arrival in this host's kernel -> its worker reading it.
        var clientNanos: [UInt64]
        /// The servers' STATS added up (maxima: the largest), CPU seconds and peak RSS added up.
        var stats: [String: UInt64]
        var serverCPUSeconds: Double
        var serverPeakRSS: Int
        var clientPeakRSS: Int
    }

    /// Makes room for `descriptors` open files in this process and its children: raises the soft limit, and
    /// the hard one when allowed (CAP_SYS_RESOURCE). Returns the limit now in force.
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

    /// Files a process keeps beside its connections (and a margin for SO_REUSEPORT's uneven spread).
    static let filesBesideConnections = 1024

    /// `count` connections, one request each for `item` (in the map with `waitNanos` and `response`).
    /// The requests are sent evenly over `spreadNanos` (all workers together: `count` per spread).
    static func run(mapPath: String, reactors: Int?, serverArguments: [String], count: Int, item: String,
                    waitNanos: UInt64, response: Int64, spreadNanos: UInt64) throws -> Figures {
        let files = raiseFileLimit(to: count + filesBesideConnections)
        let perProcess = max(files - filesBesideConnections, 1)
        let processes = (count + perProcess - 1) / perProcess

        // The servers: the first picks the port, the others join it.
        var servers: [BenchServer] = []
        defer { for s in servers { try? s.stop() } }
        var shared: [String] = []
        if processes > 1 {
            // Each takes its share by hash; its limit is what its open files allow.
            shared = ["--share-port", "--max-connections", String(files - 64)]
        } else if count + 64 > 4096 {
            shared = ["--max-connections", String(count + 64)]  // above the default, as a user would raise it
        }
        var port: UInt16 = 0
        for _ in 0..<processes {
            let server = try BenchServer(map: mapPath, reactors: reactors, listen: "tcp://127.0.0.1:\(port)",
                                         privateStatsListener: true, extraArguments: shared + serverArguments)
            servers.append(server)
            if case .tcp(_, let p) = server.endpoint { port = p }
        }
        let rssBefore = servers.map { ProcessMetrics.currentRSS(pid: $0.pid) ?? 0 }
        let cpuBefore = servers.map(\.cpuSeconds)

        // The workers, each with its share of the connections.
        let start = Runner.monotonicSeconds()
        var workers: [Worker] = []
        var first = 0
        for w in 0..<processes {
            let n = count / processes + (w < count % processes ? 1 : 0)
            workers.append(try Worker(arguments: [
                "connections-worker", "--port", String(port), "--count", String(n), "--first", String(first),
                "--item", item, "--response", String(response), "--wait-nanos", String(waitNanos),
                "--spread-nanos", String(spreadNanos)]))
            first += n
        }
        for w in workers { try w.expect("connected", seconds: 180) }
        // Accepted by the servers (a server counts a connection when a reactor accepts it; a probe is one more).
        func held() throws -> Int {
            try servers.reduce(0) { $0 + Int(try ServerStatsProbe.read($1.statsEndpoint)["connections"] ?? 1) - 1 }
        }
        while try held() < count {
            guard Runner.monotonicSeconds() - start < 180 else { throw Failure(description: "the servers did not accept \(count) connections") }
            usleep(10_000)
        }
        let acceptSeconds = Runner.monotonicSeconds() - start
        let rssIdle = servers.map { ProcessMetrics.currentRSS(pid: $0.pid) ?? 0 }

        for w in workers { try w.send("go") }
        var late: [Int64] = []
        var clientNanos: [UInt64] = []
        var clientRSS = 0
        for w in workers {
            late += try w.numbers("late", seconds: 120 + Double(waitNanos) / 1e9).map { Int64($0)! }
            clientNanos += try w.numbers("client", seconds: 10).map { UInt64($0)! }
            clientRSS += Int(try w.numbers("rss", seconds: 10).first ?? "0") ?? 0
            try w.finish()
        }
        let seconds = Runner.monotonicSeconds() - start
        let rssAfter = servers.map { ProcessMetrics.currentRSS(pid: $0.pid) ?? 0 }
        guard late.count == count else { throw Failure(description: "\(late.count) replies, expected \(count)") }

        var stats: [String: UInt64] = [:]
        for s in servers {
            for (key, value) in try ServerStatsProbe.read(s.statsEndpoint) {
                stats[key] = key.contains("max") ? max(stats[key] ?? 0, value) : (stats[key] ?? 0) + value
            }
        }
        let cpu = zip(servers, cpuBefore).reduce(0.0) { $0 + $1.0.cpuSeconds - $1.1 }
        let peak = servers.reduce(0) { $0 + $1.peakRSS }
        for s in servers { try s.stop() }
        servers.removeAll()

        late.sort()
        func ms(_ v: Int64) -> Double { Double(v) / 1e6 }
        func perConnection(_ rss: [Int]) -> Double { Double(zip(rss, rssBefore).reduce(0) { $0 + $1.0 - $1.1 }) / Double(count) }
        return Figures(
            acceptsPerSecond: Double(count) / acceptSeconds,
            rssPerConnection: perConnection(rssIdle), rssPerConnectionAfter: perConnection(rssAfter),
            lateness: (ms(late[count / 2]), ms(late[min(count - 1, count * 99 / 100)]), ms(late[count - 1])),
            seconds: seconds, connections: count, servers: processes, workers: processes,
            clientNanos: clientNanos, stats: stats, serverCPUSeconds: cpu, serverPeakRSS: peak, clientPeakRSS: clientRSS)
    }

    /// A `connections-worker` child of this executable, talked to in lines over its stdin and stdout.
    final class Worker {
        private var child: Reaped
        private let input: Int32
        private let output: Int32
        private var buffered: [UInt8] = []

        init(arguments: [String]) throws {
            var toChild: [Int32] = [0, 0]
            var fromChild: [Int32] = [0, 0]
            guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else { throw Failure(description: "pipe: \(String(cString: strerror(errno)))") }
            for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
            posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
            do {
                child = Reaped(try spawnChild(try executablePath("asynccom-bench"), arguments, actions: &actions))
            } catch {
                for fd in toChild + fromChild { close(fd) }
                throw error
            }
            close(toChild[0])
            close(fromChild[1])
            input = toChild[1]
            output = fromChild[0]
        }

        deinit {
            if child.exitStatus == nil {
                kill(child.pid, SIGKILL)
                _ = try? child.wait(seconds: 10) { Failure(description: "worker \(child.pid) did not exit") }
            }
            close(input)
            close(output)
        }

        func send(_ line: String) throws {
            let bytes = Array((line + "\n").utf8)
            guard bytes.withUnsafeBytes({ write(input, $0.baseAddress, $0.count) }) == bytes.count else {
                throw Failure(description: "worker \(child.pid): write failed")
            }
        }

        /// The next line from the worker; nil when it has exited (it said why on stderr).
        func line(seconds: Double) throws -> String? {
            let deadline = Runner.monotonicSeconds() + seconds
            while true {
                if let lf = buffered.firstIndex(of: 0x0A) {
                    defer { buffered.removeFirst(lf + 1) }
                    return String(decoding: buffered[..<lf], as: UTF8.self)
                }
                let left = deadline - Runner.monotonicSeconds()
                guard left > 0 else { throw Failure(description: "worker \(child.pid): no reply within \(seconds) s") }
                var pfd = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, Int32(min(left, 1) * 1000)) <= 0 { continue }
                var chunk = [UInt8](repeating: 0, count: 1 << 16)
                let n = read(output, &chunk, chunk.count)
                if n <= 0 { return nil }
                buffered += chunk[0..<n]
            }
        }

        func expect(_ word: String, seconds: Double) throws {
            guard let got = try line(seconds: seconds) else { throw exited() }
            guard got == word else { throw Failure(description: "worker \(child.pid): expected '\(word)', got '\(got.prefix(80))'") }
        }

        /// The comma-separated values of a `word v,v,...` line.
        func numbers(_ word: String, seconds: Double) throws -> [Substring] {
            guard let got = try line(seconds: seconds) else { throw exited() }
            guard got.hasPrefix(word + " ") else { throw Failure(description: "worker \(child.pid): expected '\(word) ...', got '\(got.prefix(80))'") }
            return got.dropFirst(word.count + 1).split(separator: ",")
        }

        func finish() throws {
            let status = try child.wait(seconds: 30) { Failure(description: "worker \(child.pid) did not exit") }
            guard status == 0 else { throw Failure(description: "worker \(child.pid) exited with status \(status)") }
        }

        private func exited() -> Failure {
            let status = (try? child.wait(seconds: 5) { Failure(description: "") }).map { "status \($0)" } ?? "no status"
            return Failure(description: "connections worker \(child.pid) ended early (\(status)); see its error above")
        }
    }
}
