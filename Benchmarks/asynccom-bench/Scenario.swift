/// One named benchmark: a data set, how the client drives it, and the targets it is judged by.
struct Scenario: Sendable {
    var name: String
    var variant: String
    var summary: String
    var data: DataSetSpec
    var batch = 16
    var window = 256
    var connections = 1
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

    /// Extra asynccom-server arguments of this scenario (added to `--server-arg`s).
    var serverArguments: [String] = []
    /// The `http` scenario: wrk against an HTTP server instead of the client engine (HTTPBench.swift).
    var http: HTTPLoad? = nil

    var label: String { variant.isEmpty ? name : "\(name) (\(variant))" }
}

/// A bound a scenario's median must meet.
struct Target: Sendable {
    enum Metric: String, Sendable {
        case wallSeconds = "wall s"
        case commandsPerSecond = "cmd/s"
        case serverCPUPerMillion = "server CPU s/M cmd"
        case serverPeakRSSMiB = "server peak RSS MiB"
        case latenessP99Millis = "lateness p99 ms"
        case loadSeconds = "load s"
        case mapBytesPerEntry = "map B/entry"
        case requestsPerSecond = "req/s"
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

        var seed = Scenario(name: "seed", variant: "", summary: "the original's headline: 512 commands x 1 s, batch 16",
                            data: DataSetSpec())
        seed.runs = 5
        seed.targets = [Target(metric: .wallSeconds, bound: 1.02, atMost: true)]
        list.append(seed)

        // 62,500 devices x 2 commands, walked 8 times: 1,000,000 commands. The map is kept to 125,000 entries so
        // that the server's peak RSS shows what in-flight commands cost; `maploading` measures a 1M-entry map.
        var inflightData = DataSetSpec()
        inflightData.devices = 62_500
        inflightData.repeats = 8
        var inflight = Scenario(name: "inflight", variant: "batch 16", summary: "1,000,000 commands x 1 s all in flight",
                                data: inflightData)
        inflight.window = 65_536
        inflight.targets = [
            Target(metric: .wallSeconds, bound: 1.5, atMost: true),
            Target(metric: .serverPeakRSSMiB, bound: 64, atMost: true),
            Target(metric: .latenessP99Millis, bound: 5, atMost: true),
        ]
        list.append(inflight)
        var inflight1 = inflight
        inflight1.variant = "batch 1"
        inflight1.batch = 1
        inflight1.window = 1 << 20
        inflight1.targets = []
        list.append(inflight1)

        var throughputData = DataSetSpec()
        throughputData.devices = 65_536
        throughputData.repeats = 16
        throughputData.wait = .fixed(0)
        for (batch, window) in [(1, 4096), (16, 1024), (64, 256)] {
            for reactors in [nil, 1] as [Int?] {
                var s = Scenario(name: "throughput",
                                 variant: "batch \(batch), window \(window)" + (reactors == nil ? "" : ", 1 reactor"),
                                 summary: "2,097,152 commands, wait 0", data: throughputData)
                s.batch = batch
                s.window = window
                s.connections = 2
                s.reactors = reactors
                s.measureLateness = false
                if batch == 16 && reactors == nil {
                    s.targets = [
                        Target(metric: .commandsPerSecond, bound: 5_000_000, atMost: false),
                        Target(metric: .serverCPUPerMillion, bound: 0.2, atMost: true),
                    ]
                }
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

        var mixedData = DataSetSpec()
        mixedData.devices = 50_000
        mixedData.wait = .uniform(0, 2_000_000_000)
        mixedData.unknownFraction = 0.01
        mixedData.response = .deviceIndex
        var mixed = Scenario(name: "mixed", variant: "batch 1", summary: "100,000 commands, waits 0-2 s, 1% unknown devices",
                             data: mixedData)
        mixed.batch = 1
        mixed.window = 1 << 17
        list.append(mixed)

        var mapData = DataSetSpec()
        mapData.devices = 500_000
        var maploading = Scenario(name: "maploading", variant: "", summary: "load a 1,000,000-line device map", data: mapData)
        maploading.isMapLoading = true
        maploading.runs = 5
        maploading.targets = [Target(metric: .loadSeconds, bound: 0.5, atMost: true)]
        list.append(maploading)

        // A fleet of a million devices with ten commands each, as the server holds it.
        var bigMapData = DataSetSpec()
        bigMapData.devices = 1_000_000
        bigMapData.commands = (0..<10).map { "cmd\($0)" }
        var bigmap = Scenario(name: "bigmap", variant: "", summary: "a 10,000,000-entry map in the server: load time, resident bytes per entry, loader peak",
                              data: bigMapData)
        bigmap.isMapMemory = true
        bigmap.targets = [Target(metric: .loadSeconds, bound: 3, atMost: true),
                          Target(metric: .mapBytesPerEntry, bound: 40, atMost: true)]
        list.append(bigmap)
        list += HTTPBench.scenarios()
        return list
    }
}
