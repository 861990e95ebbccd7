import AsyncComCore

/// What became of one command.
public enum CommandOutcome: Sendable, Equatable {
    /// The device's response.
    case value(Int64)
    /// The server has no such (device, command): `?` on the wire.
    case unknown
    /// No answer: timeouts exhausted, server unreachable, or an `ERR` for its request. `reason` is one line.
    case failed(reason: String)
}

/// The result of one well-formed command.
///
/// A result made by the engine for a short command (`device:command` of at most 32 bytes, the usual case)
/// does not hold a `String`: it carries the item's bytes inline, and `entry` builds the `CommandEntry` when
/// asked. Delivering a million results then costs no allocation, UTF-8 validation or reference counting per
/// result, which is what kept the client's reply path behind its send path (see docs/ARCHITECTURE.md).
public struct CommandResult: Sendable, Equatable {
    /// 0-based position among the source's well-formed commands (input order).
    public var sequence: Int
    /// The command as read: device, item text (`device:command`), line number. Built on each read for a
    /// result from the wire; read `line`, `device` or `withItemBytes` when that is all you need.
    public var entry: CommandEntry {
        get {
            switch storage {
            case .entry(let e): return e
            case .inline(let item): return item.entry
            }
        }
        set { storage = .entry(newValue) }
    }
    public var outcome: CommandOutcome
    /// The server that answered, or the one the command was routed to when it failed.
    public var server: Endpoint
    /// Nanoseconds from the first send of its request to the answer (0 when it was never sent).
    public var latencyNanos: UInt64

    private var storage: Storage

    public init(sequence: Int, entry: CommandEntry, outcome: CommandOutcome, server: Endpoint, latencyNanos: UInt64) {
        self.sequence = sequence
        self.storage = .entry(entry)
        self.outcome = outcome
        self.server = server
        self.latencyNanos = latencyNanos
    }

    /// A result for the command whose item is `item` (not copied beyond this call).
    @inline(__always)
    init(sequence: Int, item: UnsafeRawBufferPointer, commandStart: Int, device: DeviceAddress, line: Int,
         outcome: CommandOutcome, server: Endpoint, latencyNanos: UInt64) {
        self.sequence = sequence
        if let inline = InlineItem(item: item, commandStart: commandStart, device: device, line: line) {
            self.storage = .inline(inline)
        } else {
            self.storage = .entry(CommandEntry(device: device, item: String(decoding: item, as: UTF8.self),
                                               commandStart: commandStart, line: line))
        }
        self.outcome = outcome
        self.server = server
        self.latencyNanos = latencyNanos
    }

    /// 1-based line of the command in its source.
    public var line: Int {
        switch storage {
        case .entry(let e): return e.line
        case .inline(let item): return item.line
        }
    }

    public var device: DeviceAddress {
        switch storage {
        case .entry(let e): return e.device
        case .inline(let item): return item.device
        }
    }

    /// Calls `body` with the item's bytes (`device:command`) and the command's offset in them, without
    /// building a `String`. The bytes are valid only during the call.
    public func withItemBytes<R>(_ body: (UnsafeRawBufferPointer, _ commandStart: Int) throws -> R) rethrows -> R {
        switch storage {
        case .entry(let e):
            var item = e.item
            return try item.withUTF8 { try body(UnsafeRawBufferPointer($0), e.commandStart) }
        case .inline(let inline):
            return try inline.withBytes { try body($0, Int(inline.commandStart)) }
        }
    }

    public static func == (a: CommandResult, b: CommandResult) -> Bool {
        a.sequence == b.sequence && a.outcome == b.outcome && a.server == b.server && a.latencyNanos == b.latencyNanos
            && a.entry == b.entry
    }

    private enum Storage: Sendable {
        case entry(CommandEntry)
        case inline(InlineItem)
    }
}

/// A short command's text and position, held by value: no allocation, no reference to count.
struct InlineItem: Sendable {
    static let capacity = 32
    private var bytes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private let length: UInt8
    let commandStart: UInt8
    let device: DeviceAddress
    let line: Int

    @inline(__always)
    init?(item: UnsafeRawBufferPointer, commandStart: Int, device: DeviceAddress, line: Int) {
        guard item.count <= InlineItem.capacity, commandStart >= 0, commandStart <= item.count else { return nil }
        length = UInt8(item.count)
        self.commandStart = UInt8(commandStart)
        self.device = device
        self.line = line
        withUnsafeMutableBytes(of: &bytes) { $0.copyMemory(from: item) }
    }

    @inline(__always)
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(of: bytes) { try body(UnsafeRawBufferPointer(rebasing: $0.prefix(Int(length)))) }
    }

    var entry: CommandEntry {
        withBytes { CommandEntry(device: device, item: String(decoding: $0, as: UTF8.self), commandStart: Int(commandStart), line: line) }
    }
}

/// The answer to one request (a batch of commands sent together): each command's sequence and outcome, and
/// the request's latency. Lighter than a `CommandResult` per command: it shares the engine's arrays (copied
/// only if kept past the callback and the engine reuses them).
public struct AnsweredRequest: Sendable {
    /// Nanoseconds from the first send of the request to its answer.
    public let latencyNanos: UInt64
    /// Of those, the nanoseconds from the reply's arrival in this host's kernel (its receive stamp) to its
    /// handling here: the time the reply spent in the client before it was read and processed.
    public let clientNanos: UInt64
    public let server: Endpoint
    let commands: [PendingCommand]
    let results: [ItemResult]

    /// Commands in the request.
    public var count: Int { commands.count }

    /// The 0-based input position of command `i` (as `CommandResult.sequence`).
    public func sequence(at i: Int) -> Int { commands[i].sequence }
    public func outcome(at i: Int) -> CommandOutcome { CommandOutcome(results[i]) }
}

/// A snapshot of a running job, delivered about four times a second to `onProgress`.
public struct JobProgress: Sendable, Equatable {
    /// Commands with a result (ok, unknown or failed).
    public var done: Int
    /// Well-formed commands pulled from the source so far (the total once `sourceExhausted`).
    public var pulled: Int
    public var sourceExhausted: Bool
    /// Commands sent and not yet answered.
    public var inFlight: Int
    /// Commands that failed so far (included in `done`).
    public var failed: Int
    public var elapsedSeconds: Double
    /// Commands per second over the whole job so far.
    public var commandsPerSecond: Double

    public init(done: Int, pulled: Int, sourceExhausted: Bool, inFlight: Int, failed: Int, elapsedSeconds: Double, commandsPerSecond: Double) {
        self.done = done
        self.pulled = pulled
        self.sourceExhausted = sourceExhausted
        self.inFlight = inFlight
        self.failed = failed
        self.elapsedSeconds = elapsedSeconds
        self.commandsPerSecond = commandsPerSecond
    }
}

extension CommandOutcome {
    @inline(__always) init(_ result: ItemResult) {
        switch result {
        case .value(let v): self = .value(v)
        case .unknown: self = .unknown
        }
    }
}
