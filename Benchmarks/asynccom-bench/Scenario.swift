/// One named benchmark: a data set, how the client drives it, and the targets it is judged by.
struct Scenario: Sendable {
    var name: String
    var variant: String
    var summary: String
    var data: DataSetSpec
    /// The client's settings; nil: the client's default (`ClientConfiguration`), which is what scenarios
    /// measure unless their variant says "tuned".
    var batch: Int? = nil
    var window: Int? = nil
    var connections: Int? = nil
    var reactors: Int? = nil
    var runs = 3
    /// Record every command's lateness (latency beyond its modelled wait). Costs client CPU, so throughput
    /// runs (wait 0) skip it.
    var measureLateness = true
    var targets: [Target] = []

    /// Map loading is measured in-process, not through a server.
    var isMapLoading = false
    /// Map memory is measured on the server process: its resident memory once listening with this map, minus
    /// that of a server with a one-entry map, per entry; the same for its peak (the loader's) and startup time.
    var isMapMemory = false
    /// Many connections with one request each (`ManyConnections`), this many of them, the requests sent evenly
    /// over this many seconds (0: in one burst).
    var manyConnections = 0
    var manyConnectionsSpread = 0.0

    /// `hostfloor`: bare threads sleeping to deadlines this many nanoseconds apart (`HostFloor`), no server.
    var hostFloorPeriodNanos = 0

    /// Extra asynccom-server arguments of this scenario (added to `--server-arg`s).
    var serverArguments: [String] = []
    /// The `http` scenario: wrk against an HTTP server instead of the client engine (HTTPBench.swift).
    var http: HTTPLoad? = nil
    /// Serve and connect over TLS (`tls://`, a certificate made in the scratch folder).
    var tls = false
    /// Measure full TLS handshakes per second instead of a job (reported in the cmd/s column).
    var isHandshakes = false

    var label: String { variant.isEmpty ? name : "\(name) (\(variant))" }

    /// The same run with the server's reactors bound to CPUs of their own (`--pin-reactors on`), as an extra row
    /// without targets: what a server host of its own gets, against what a client on the same cores loses.
    func pinned() -> Scenario {
        var s = self
        s.variant = "tuned: " + (variant == "defaults" ? "" : variant + ", ") + "server --pin-reactors on"
        s.serverArguments += ["--pin-reactors", "on"]
        s.targets = []
        return s
    }
}

/// A bound a scenario's median must meet.
struct Target: Sendable {
    enum Metric: String, Sendable {
        case wallSeconds = "wall s"
        case commandsPerSecond = "cmd/s"
        case serverCPUPerMillion = "server CPU s/M cmd"
        case serverPeakRSSMiB = "server peak RSS MiB"
        case combinedPeakRSSMiB = "server + client peak RSS MiB"
        case latenessP99Millis = "lateness p99 ms"
        case loadSeconds = "load s"
        case mapBytesPerEntry = "map B/entry"
        case requestsPerSecond = "req/s"
        case rssPerConnectionBytes = "server B/connection"
    }

    var metric: Metric
    var bound: Double
    /// True when the value must be at most `bound`; false when at least.
    var atMost: Bool

    func met(_ value: Double) -> Bool { atMost ? value <= bound : value >= bound }
    var text: String { "\(metric.rawValue) \(atMost ? "<=" : ">=") \(Report.number(bound))" }
}

enum Scenarios {
    static func all() -> [Scenario] {
        var list: [Scenario] = []

        var seed = Scenario(name: "seed", variant: "", summary: "the original's headline: 512 commands x 1 s, client defaults",
                            data: DataSetSpec())
        seed.runs = 5
        seed.targets = [Target(metric: .wallSeconds, bound: 1.02, atMost: true)]
        list.append(seed)

        // 500,000 devices x 2 commands: 1,000,000 commands of 1 s and a 1,000,000-entry map, the client as a
        // user runs it (no tuning flags).
        let inflightData = DataSetSpec(devices: 500_000)
        var inflight = Scenario(name: "inflight", variant: "defaults", summary: "1,000,000 commands x 1 s all in flight, client defaults",
                                data: inflightData)
        inflight.targets = [
            Target(metric: .wallSeconds, bound: 1.3, atMost: true),
            Target(metric: .latenessP99Millis, bound: 3, atMost: true),  // issue 15: 1M x 1 s, 1M-entry map
        ]
        list.append(inflight)
        list.append(inflight.pinned())
        // Tuned variants (extra rows): 62,500 devices x 2 commands walked 8 times, so that the server's peak RSS
        // shows what in-flight commands cost rather than the map.
        let tunedData = DataSetSpec(devices: 62_500, repeats: 8)
        var inflight16 = Scenario(name: "inflight", variant: "tuned: batch 16, window 65536, 1 connection",
                                  summary: "1,000,000 commands x 1 s all in flight", data: tunedData)
        inflight16.batch = 16
        inflight16.window = 65_536
        inflight16.connections = 1
        inflight16.targets = [Target(metric: .serverPeakRSSMiB, bound: 64, atMost: true)]
        list.append(inflight16)
        var inflight1 = inflight16
        inflight1.variant = "tuned: batch 1, window 1048576, 1 connection"
        inflight1.batch = 1
        inflight1.window = 1 << 20
        inflight1.targets = []
        list.append(inflight1)
        // 100,000 devices x 2 commands walked 50 times: 10,000,000 commands of 1 s, streamed from the file.
        let tenMData = DataSetSpec(devices: 100_000, repeats: 50)
        var tenM = Scenario(name: "inflight10m", variant: "defaults", summary: "10,000,000 commands x 1 s, client defaults",
                            data: tenMData)
        tenM.targets = [
            Target(metric: .wallSeconds, bound: 3.0, atMost: true),
            Target(metric: .combinedPeakRSSMiB, bound: 512, atMost: true),
            Target(metric: .latenessP99Millis, bound: 10, atMost: true),
        ]
        list.append(tenM)
        list.append(tenM.pinned())
        // The flags the issue measured 64 ms p99 lateness with, before the client's defaults were adaptive.
        var tenMTuned = tenM
        tenMTuned.variant = "tuned: batch 16, window 65536, 10 connections"
        tenMTuned.summary = "10,000,000 commands x 1 s"
        tenMTuned.batch = 16
        tenMTuned.window = 65_536
        tenMTuned.connections = 10
        tenMTuned.runs = 1
        tenMTuned.targets = []
        list.append(tenMTuned)

        let throughputData = DataSetSpec(devices: 65_536, wait: .fixed(0), repeats: 16)
        var throughput = Scenario(name: "throughput", variant: "defaults", summary: "2,097,152 commands, wait 0, client defaults",
                                  data: throughputData)
        throughput.measureLateness = false
        throughput.targets = [
            Target(metric: .commandsPerSecond, bound: 5_000_000, atMost: false),
            Target(metric: .serverCPUPerMillion, bound: 0.2, atMost: true),
        ]
        list.append(throughput)
        list.append(throughput.pinned())
        for (batch, window) in [(1, 4096), (16, 1024), (64, 256)] {
            for reactors in [nil, 1] as [Int?] {
                var s = Scenario(name: "throughput",
                                 variant: "tuned: batch \(batch), window \(window), 2 connections" + (reactors == nil ? "" : ", 1 reactor"),
                                 summary: "2,097,152 commands, wait 0", data: throughputData)
                s.batch = batch
                s.window = window
                s.connections = 2
                s.reactors = reactors
                s.measureLateness = false
                list.append(s)
                if batch == 16 && reactors == nil {
                    // Protocol v1 with the HTTP listener on as well (idle): it must cost protocol v1 nothing.
                    var withHTTP = s
                    withHTTP.variant += ", --http-listen on"
                    withHTTP.serverArguments = ["--http-listen", "tcp://127.0.0.1:0"]
                    withHTTP.targets = []
                    list.append(withHTTP)
                }
            }
        }

        let mixedData = DataSetSpec(devices: 50_000, wait: .uniform(0, 2_000_000_000), response: .deviceIndex,
                                    unknownFraction: 0.01)
        var mixed = Scenario(name: "mixed", variant: "batch 1", summary: "100,000 commands, waits 0-2 s, 1% unknown devices",
                             data: mixedData)
        mixed.batch = 1
        mixed.window = 1 << 17
        mixed.targets = [Target(metric: .latenessP99Millis, bound: 5, atMost: true)]  // issue 15
        list.append(mixed)
        list.append(mixed.pinned())

        // What the host itself allows: the floor under the lateness figures above.
        var hostfloor = Scenario(name: "hostfloor", variant: "", summary: "a bare thread per CPU sleeping to deadlines 1 ms apart for 5 s, no server: how late this host wakes a timer (the floor under every lateness figure)",
                                 data: DataSetSpec(devices: 1))
        hostfloor.hostFloorPeriodNanos = 1_000_000
        list.append(hostfloor)

        var maploading = Scenario(name: "maploading", variant: "", summary: "load a 1,000,000-line device map",
                                  data: DataSetSpec(devices: 500_000))
        maploading.isMapLoading = true
        maploading.runs = 5
        maploading.targets = [Target(metric: .loadSeconds, bound: 0.5, atMost: true)]
        list.append(maploading)

        // A fleet of a million devices with ten commands each, as the server holds it.
        var bigmap = Scenario(name: "bigmap", variant: "", summary: "a 10,000,000-entry map in the server: load time, resident bytes per entry, loader peak",
                              data: DataSetSpec(devices: 1_000_000, commands: (0..<10).map { "cmd\($0)" }))
        bigmap.isMapMemory = true
        bigmap.targets = [Target(metric: .loadSeconds, bound: 3, atMost: true),
                          Target(metric: .mapBytesPerEntry, bound: 40, atMost: true)]
        list.append(bigmap)

        // TLS against plaintext in the same run, client defaults: zero-wait throughput (the TLS cost per byte
        // shows), the inflight job (1M x 1 s: the wall time should barely move), and full handshakes per second.
        for tls in [false, true] {
            var s = Scenario(name: "tls", variant: "throughput, defaults, \(tls ? "TLS" : "plain")",
                             summary: "2,097,152 commands, wait 0, over \(tls ? "TLS" : "plain TCP")", data: throughputData)
            s.measureLateness = false
            s.tls = tls
            list.append(s)
        }
        for tls in [false, true] {
            var s = Scenario(name: "tls", variant: "inflight 1M x 1 s, defaults, \(tls ? "TLS" : "plain")",
                             summary: "1,000,000 commands x 1 s all in flight, over \(tls ? "TLS" : "plain TCP")",
                             data: inflightData)
            s.tls = tls
            list.append(s)
        }
        var handshakes = Scenario(name: "tls", variant: "handshakes/s (in cmd/s)",
                                  summary: "full TLS handshakes one after another for 5 s (connect, verify, PING, close)",
                                  data: DataSetSpec())
        handshakes.tls = true
        handshakes.isHandshakes = true
        list.append(handshakes)

        // 50,000 connections from 127.0.0.2-9, each with one 1 s request. Where one process may not open that
        // many files (RLIMIT_NOFILE), several servers share the port and several processes connect. The requests
        // go out evenly over 1 s (50,000/s), so that when the first comes due all 50,000 are in flight at once;
        // the burst variant sends them all at once, and its lateness is then the time to write 50,000 replies
        // due in the same millisecond (and to read them on the same 2 cores).
        var many = Scenario(name: "connections", variant: "50,000",
                            summary: "50,000 concurrent connections to one port, one 1 s request each sent over 1 s (all in flight together): accept rate, server RSS per idle connection, lateness (over several servers sharing the port with --share-port when the open-file limit is below the count)",
                            data: DataSetSpec())
        many.manyConnections = 50_000
        many.manyConnectionsSpread = 1
        many.runs = 1
        many.targets = [Target(metric: .latenessP99Millis, bound: 10, atMost: true),
                        Target(metric: .rssPerConnectionBytes, bound: 2048, atMost: true)]
        list.append(many)
        var burst = many
        burst.variant = "50,000, requests in one burst"
        burst.summary = "the same with the 50,000 requests sent at once (all due in the same millisecond)"
        burst.manyConnectionsSpread = 0
        burst.targets = []
        list.append(burst)
        list += HTTPBench.scenarios()
        return list
    }
}
