import AsyncComCore
import Benchmark

// The hot paths of a request's life: parse + look up + format on the server, parse the reply on the client.
// Each benchmark processes 1,000 requests of 16 items per iteration, so `throughput` x 16,000 is commands/s.
// mallocCountTotal should be 0 for every one of them: the hot paths allocate nothing in steady state.

private let devices = 4096
private let commandNames = ["foo", "bar"]

private func makeMap() -> DeviceMap {
    var text = ""
    for d in 0..<devices {
        for c in commandNames { text += "10.0.\(d >> 8).\(d & 255):\(c):\(d):1\n" }
    }
    var t = text
    return t.withUTF8 { try! DeviceMap(parsing: UnsafeRawBufferPointer($0), fileName: "bench") }
}

/// 1,000 request lines of 16 items each, the last 2 of every request unknown.
private func makeRequests() -> [[UInt8]] {
    (0..<1000).map { r in
        var line = "REQ \(r)"
        for i in 0..<16 {
            let d = (r * 16 + i) % devices
            line += i >= 14 ? " 11.0.\(d >> 8).\(d & 255):foo" : " 10.0.\(d >> 8).\(d & 255):\(commandNames[i & 1])"
        }
        return Array(line.utf8)
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        maxDuration: .seconds(2)
    )

    let map = makeMap()
    let requests = makeRequests()

    Benchmark("server: parse, look up and format 1k REQ x16") { benchmark in
        let reply = ByteBuffer(capacity: 1 << 16)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for line in requests {
                line.withUnsafeBytes { bytes in
                    blackHole(ServerProtocol.handle(line: bytes, map: map, maxItems: 1024, reply: reply))
                }
            }
            reply.clear()
        }
    }

    Benchmark("map: 16k lookups") { benchmark in
        let device = DeviceAddress(ipv4: 0x0A00_0001)
        let command: [UInt8] = Array("foo".utf8)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            command.withUnsafeBytes { cmd in
                var found = 0
                for d in 0..<16_000 {
                    let dev = DeviceAddress(ipv4: 0x0A00_0000 | UInt32(d % devices))
                    found &+= map.lookup(device: dev, command: cmd)
                }
                blackHole(found)
            }
        }
        blackHole(device)
    }

    Benchmark("client: parse 1k RES x16") { benchmark in
        let reply = ByteBuffer(capacity: 1 << 16)
        for line in requests { line.withUnsafeBytes { _ = ServerProtocol.handle(line: $0, map: map, maxItems: 1024, reply: reply) } }
        let replyText = reply.readableString.split(separator: "\n").map { Array($0.utf8) }
        var results: [ItemResult] = []
        results.reserveCapacity(64)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for line in replyText {
                line.withUnsafeBytes { bytes in
                    blackHole(ClientProtocol.parse(line: bytes, results: &results))
                }
            }
        }
    }

    Benchmark("client: encode 1k REQ x16") { benchmark in
        let items: [[UInt8]] = (0..<16).map { Array("10.0.0.\($0):foo".utf8) }
        let out = ByteBuffer(capacity: 1 << 20)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for r in 0..<1000 {
                ClientProtocol.beginRequest(id: UInt64(r), to: out)
                for item in items { item.withUnsafeBytes { ClientProtocol.appendItem($0, to: out) } }
                ClientProtocol.endRequest(to: out)
            }
            out.clear()
        }
    }
}
