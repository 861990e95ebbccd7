import AsyncComCore

/// Where a job's commands come from. The engine pulls lazily, on its loop thread, and only when a window has
/// room, so a source backed by a file streams any number of commands in bounded memory.
public protocol CommandSource {
    /// The next well-formed command, or nil when there are no more. Throwing ends the job with
    /// `ClientError.source` (for input errors such as an unreadable file, not for malformed lines).
    mutating func next() throws -> CommandEntry?
    /// Lines skipped as malformed so far (reported in `JobSummary.malformed`).
    var malformedCount: Int { get }
}

extension CommandSource {
    public var malformedCount: Int { 0 }
}

/// A source that can hand out its commands in place, a batch per call: the engine then builds no `CommandEntry`
/// (and no String) per command when nobody wants per-command results, and pays one dynamic call per batch
/// instead of one per command. The file and memory sources implement it; any other source goes through `next()`.
protocol InPlaceCommandSource: CommandSource {
    /// Hands up to `limit` well-formed commands to `body`, in order: the device, the `device:command` bytes (valid
    /// only during the call), the command's offset in them and the line number. Returns how many it handed out;
    /// fewer than `limit` means the source is exhausted. Malformed lines are counted and reported as by `next()`.
    mutating func pull(limit: Int, _ body: (DeviceAddress, UnsafeRawBufferPointer, Int, Int) -> Void) throws -> Int
    /// Called once on the loop thread before the first `pull`. A source whose input arrives over time (a pipe,
    /// FIFO or terminal) starts reading it in the background here; from then on `pull` never waits for input,
    /// and `wake` (any thread) brings the loop back when more has come.
    func startReading(wake: @escaping @Sendable () -> Void)
    /// After a `pull` that returned fewer than `limit`: true when that is because nothing more has arrived yet
    /// (the source calls `wake` when it has), false when the source has ended.
    var isAwaitingInput: Bool { get }
}

extension InPlaceCommandSource {
    func startReading(wake: @escaping @Sendable () -> Void) {}
    var isAwaitingInput: Bool { false }
}

/// One line of a commands file for `pull`: a command goes to `body` (true); a blank or `#` line is skipped; a
/// malformed one is counted and reported.
///
/// `fileName` is an autoclosure, read only for a malformed line: passed as a String, the file's name was
/// retained and released for every line, 11% of the client's CPU in a 10M x 1 s job (perf, 20:40 UTC).
@inline(__always)
private func handOut(_ line: UnsafeRawBufferPointer, number: Int, fileName: @autoclosure () -> String, malformedCount: inout Int,
                     _ onMalformed: ((InputFileError) -> Void)?,
                     _ body: (DeviceAddress, UnsafeRawBufferPointer, Int, Int) -> Void) -> Bool {
    switch CommandsFile.parseInPlace(line: line) {
    case .command(let device, let item, let commandStart):
        body(device, item, commandStart, number)
        return true
    case .skip:
        return false
    case .malformed(let reason):
        malformedCount += 1
        onMalformed?(CommandsFile.malformedError(reason, line: line, number: number, fileName: fileName()))
        return false
    }
}

/// Commands from a commands file (`ip:command` lines; blank and `#` lines skipped), streamed with `LineReader`.
/// A malformed line is counted, handed to `onMalformed` (on the engine's loop thread) and not sent.
public struct FileCommandSource: CommandSource, InPlaceCommandSource {
    private let reader: LineReader
    private let onMalformed: ((InputFileError) -> Void)?
    /// Malformed lines skipped so far.
    public private(set) var malformedCount = 0

    /// Opens `path` (`-` for standard input). Throws when the file is missing, a directory or unreadable.
    public init(path: String, onMalformed: ((InputFileError) -> Void)? = nil) throws(InputFileError) {
        self.reader = try LineReader(path: path)
        self.onMalformed = onMalformed
    }

    /// The name errors use for the file (`<stdin>` for `-`, else the path).
    public var name: String { reader.name }

    /// A pipe, FIFO or terminal is read on a thread of its own (`InputFeed`), so that a writer that pauses does
    /// not stop the loop; a regular file is read in place.
    func startReading(wake: @escaping @Sendable () -> Void) {
        guard reader.isStream else { return }
        _ = reader.install { fd, ownsDescriptor in InputFeed(fd: fd, ownsDescriptor: ownsDescriptor, wake: wake) }
    }

    private(set) var isAwaitingInput = false

    /// The next well-formed command; throws on an unreadable file, a line over 1 MiB or a NUL byte.
    public mutating func next() throws -> CommandEntry? {
        while let (line, number) = try reader.next() {
            switch CommandsFile.parse(line: line, number: number, fileName: reader.name) {
            case .command(let entry): return entry
            case .skip: continue
            case .malformed(let error):
                malformedCount += 1
                onMalformed?(error)
            }
        }
        return nil
    }

    mutating func pull(limit: Int, _ body: (DeviceAddress, UnsafeRawBufferPointer, Int, Int) -> Void) throws -> Int {
        var pulled = 0
        var malformed = malformedCount
        defer { malformedCount = malformed }
        let reader = self.reader
        let onMalformed = self.onMalformed
        let stop = try reader.readLines(limit: limit, accepted: &pulled) { line, number in
            handOut(line, number: number, fileName: reader.name, malformedCount: &malformed, onMalformed, body)
        }
        isAwaitingInput = stop == .notYet
        return pulled
    }
}

/// Commands from a commands file already in memory (e.g. standard input buffered for `--strict`).
public struct MemoryCommandSource: CommandSource, InPlaceCommandSource {
    private let bytes: [UInt8]
    private let name: String
    private let onMalformed: ((InputFileError) -> Void)?
    private var offset = 0
    private var lineNumber = 0
    /// Malformed lines skipped so far.
    public private(set) var malformedCount = 0

    /// `bytes` hold the file's text; `name` is what error messages call it.
    public init(bytes: [UInt8], name: String, onMalformed: ((InputFileError) -> Void)? = nil) {
        self.bytes = bytes
        self.name = name
        self.onMalformed = onMalformed
    }

    public mutating func next() throws -> CommandEntry? {
        var entry: CommandEntry?
        _ = try pull(limit: 1) { device, item, commandStart, line in
            entry = CommandEntry(device: device, item: String(decoding: item, as: UTF8.self), commandStart: commandStart, line: line)
        }
        return entry
    }

    mutating func pull(limit: Int, _ body: (DeviceAddress, UnsafeRawBufferPointer, Int, Int) -> Void) throws -> Int {
        var pulled = 0
        let bytes = self.bytes
        bytes.withUnsafeBytes { raw in
            var lines = LineFramer.Lines(raw, from: offset)
            defer { offset = lines.offset }
            while pulled < limit, let line = lines.next() {
                lineNumber += 1
                if handOut(line, number: lineNumber, fileName: name, malformedCount: &malformedCount, onMalformed, body) {
                    pulled += 1
                }
            }
        }
        return pulled
    }
}

/// Commands from an array (tests, programs that build their commands).
public struct ArrayCommandSource: CommandSource, Sendable {
    private var entries: [CommandEntry]
    private var index = 0
    /// Lines dropped as malformed by `init(lines:fileName:)`.
    public private(set) var malformedCount = 0

    /// Hands out `entries` in order.
    public init(_ entries: [CommandEntry]) {
        self.entries = entries
    }

    /// Parses `lines` as a commands file would be (line numbers from 1; blank and `#` lines skipped); malformed
    /// lines are counted in `malformedCount` and dropped.
    public init(lines: [String], fileName: String = "<array>") {
        var entries: [CommandEntry] = []
        var malformed = 0
        for (i, text) in lines.enumerated() {
            var s = text
            let parsed = s.withUTF8 { CommandsFile.parse(line: UnsafeRawBufferPointer($0), number: i + 1, fileName: fileName) }
            switch parsed {
            case .command(let entry): entries.append(entry)
            case .skip: break
            case .malformed: malformed += 1
            }
        }
        self.entries = entries
        self.malformedCount = malformed
    }

    public mutating func next() throws -> CommandEntry? {
        guard index < entries.count else { return nil }
        defer { index += 1 }
        return entries[index]
    }
}
