#if canImport(Glibc)
import Glibc
#endif
import AsyncComCore

/// A deterministic synthetic workload: a device map and a commands list that refers to it.
///
/// Device `i` is `10.a.b.c` (i as 24 bits); unknown devices are the same index under `11.`, which the map never
/// holds. Everything derives from the spec and `seed`, so a run can be repeated exactly and its expected sum is
/// known without asking the server.
struct DataSetSpec: Sendable {
    enum WaitRule: Sendable {
        case fixed(UInt64)
        /// Uniform between the bounds, in whole milliseconds.
        case uniform(UInt64, UInt64)
        /// One of the listed values, chosen per map entry.
        case list([UInt64])
    }

    enum ResponseRule: Sendable {
        case fixed(Int64)
        /// The device index, so sums differ from counts and mistakes show.
        case deviceIndex
        case random(Int64, Int64)
    }

    var devices = 256
    var commands = ["foo", "bar"]
    var wait = WaitRule.fixed(1_000_000_000)
    var response = ResponseRule.fixed(1)
    /// How many times the commands list walks over every (device, command).
    var repeats = 1
    var unknownFraction = 0.0
    var malformedFraction = 0.0
    var seed: UInt64 = 1

    var mapLines: Int { devices * commands.count }
    var commandLines: Int { devices * commands.count * repeats }
}

/// What a correct run of the data set must report.
struct Expectation: Sendable, Equatable {
    var sum: Int64 = 0
    var ok = 0
    var unknown = 0
    var malformed = 0
    var maxWaitNanos: UInt64 = 0
    var commands: Int { ok + unknown }
}

enum DataSet {
    static func deviceText(_ index: Int, unknown: Bool = false) -> String {
        let i = index & 0xFF_FFFF
        return "\(unknown ? 11 : 10).\((i >> 16) & 0xFF).\((i >> 8) & 0xFF).\(i & 0xFF)"
    }

    /// `1`, `0.25`, `1.000000001`: the shortest exact decimal for a wait in nanoseconds.
    static func secondsText(_ nanos: UInt64) -> String {
        let whole = nanos / 1_000_000_000
        var frac = nanos % 1_000_000_000
        if frac == 0 { return "\(whole)" }
        var digits = 9
        while frac % 10 == 0 { frac /= 10; digits -= 1 }
        let f = String(frac)
        return "\(whole)." + String(repeating: "0", count: digits - f.count) + f
    }

    /// Map entries, in file order: (device index, command index, response, wait).
    static func forEachMapEntry(_ spec: DataSetSpec, _ body: (Int, Int, Int64, UInt64) throws -> Void) rethrows {
        var rng = SplitMix64(seed: spec.seed)
        for d in 0..<spec.devices {
            for c in 0..<spec.commands.count {
                let wait: UInt64
                switch spec.wait {
                case .fixed(let w): wait = w
                case .uniform(let lo, let hi):
                    let loMs = lo / 1_000_000, hiMs = hi / 1_000_000
                    wait = (loMs + rng.next() % (hiMs - loMs + 1)) * 1_000_000
                case .list(let values): wait = values[Int(rng.next() % UInt64(values.count))]
                }
                let response: Int64
                switch spec.response {
                case .fixed(let r): response = r
                case .deviceIndex: response = Int64(d)
                case .random(let lo, let hi): response = lo + Int64(rng.next() % UInt64(hi - lo + 1))
                }
                try body(d, c, response, wait)
            }
        }
    }

    /// The commands list, in file order. `body(line text, kind)`; responses come from `responses`.
    enum LineKind { case known(entry: Int), unknown, malformed }

    static func forEachCommand(_ spec: DataSetSpec, _ body: (String, LineKind) throws -> Void) rethrows {
        var lines = CommandLines(spec)
        while let (text, kind) = lines.next() { try body(text, kind) }
    }

    static func expectation(_ spec: DataSetSpec) -> Expectation {
        var responses = [Int64]()
        responses.reserveCapacity(spec.mapLines)
        var e = Expectation()
        forEachMapEntry(spec) { _, _, r, w in
            responses.append(r)
            e.maxWaitNanos = max(e.maxWaitNanos, w)
        }
        forEachCommand(spec) { _, kind in
            switch kind {
            case .known(let entry): e.sum &+= responses[entry]; e.ok += 1
            case .unknown: e.unknown += 1
            case .malformed: e.malformed += 1
            }
        }
        return e
    }

    /// Writes `map.txt` and (unless `commands` is false) `commands.txt` into `directory` (created if missing).
    static func write(_ spec: DataSetSpec, to directory: String, commands: Bool = true) throws {
        mkdir(directory, 0o755)
        let map = try OutputFile(path: directory + "/map.txt")
        try map.write("# asynccom generated map: \(spec.devices) devices x \(spec.commands.count) commands, seed \(spec.seed)\n")
        try forEachMapEntry(spec) { d, c, r, w in
            try map.write("\(deviceText(d)):\(spec.commands[c]):\(r):\(secondsText(w))\n")
        }
        try map.close()
        guard commands else { return }
        let cmds = try OutputFile(path: directory + "/commands.txt")
        try forEachCommand(spec) { line, _ in
            try cmds.write(line)
            try cmds.write("\n")
        }
        try cmds.close()
    }
}

/// The commands list of a data set, produced lazily line by line (so a benchmark can stream millions of
/// commands without holding them).
struct CommandLines {
    let spec: DataSetSpec
    private var rng: SplitMix64
    private let unknownCut: UInt64
    private let malformedCut: UInt64
    private var lineNo = 0
    private var total: Int

    init(_ spec: DataSetSpec) {
        self.spec = spec
        // A generator of its own, so the commands do not depend on how many draws the map took.
        rng = SplitMix64(seed: spec.seed ^ 0xC0FF_EE00_D15E_A5E5)
        unknownCut = UInt64(spec.unknownFraction * 1_000_000)
        malformedCut = UInt64(spec.malformedFraction * 1_000_000)
        total = spec.commandLines
    }

    /// 1-based number of the line last returned.
    var lineNumber: Int { lineNo }

    mutating func next() -> (String, DataSet.LineKind)? {
        guard lineNo < total else { return nil }
        let perRepeat = spec.devices * spec.commands.count
        let within = lineNo % perRepeat
        let d = within / spec.commands.count
        let c = within % spec.commands.count
        lineNo += 1
        let roll = rng.next() % 1_000_000
        if roll < malformedCut {
            return ("malformed line \(lineNo) without a colon", .malformed)
        } else if roll < malformedCut + unknownCut {
            return (DataSet.deviceText(d, unknown: true) + ":" + spec.commands[c], .unknown)
        }
        return (DataSet.deviceText(d) + ":" + spec.commands[c], .known(entry: d * spec.commands.count + c))
    }
}

/// Buffered file output through write(2): 1 MiB at a time, so large data sets are written at disk speed.
final class OutputFile {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private let fd: Int32
    private let path: String
    private let buffer = ByteBuffer(capacity: 1 << 20)

    init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure(description: "\(path): cannot create: \(String(cString: strerror(errno)))") }
    }

    func write(_ s: String) throws {
        buffer.append(string: s)
        if buffer.readableBytes >= 1 << 20 { try flush() }
    }

    func flush() throws {
        while !buffer.isEmpty {
            let n = Glibc.write(fd, buffer.readPointer, buffer.readableBytes)
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "\(path): write failed: \(String(cString: strerror(errno)))")
            }
            buffer.consume(n)
        }
    }

    func close() throws {
        try flush()
        Glibc.close(fd)
    }
}
