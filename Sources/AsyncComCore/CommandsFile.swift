#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Streaming reader for line-based input files: reads in large chunks, hands out each line in place.
///
/// Memory stays at `maxLine + chunk` bytes whatever the file size: a line is handed out as a view into the
/// buffer, consumed on the next call, and the unread tail is moved to the front before each read.
public final class LineReader {
    public let name: String
    public static let chunkSize = 1 << 20

    let fd: Int32
    let ownsDescriptor: Bool
    let maxLine: Int
    let buffer: ByteBuffer
    /// Bytes of the line handed out last (terminator included), dropped on the next call.
    var pending = 0
    var lineNumber = 0
    var atEOF = false
    /// Stream offset of `buffer.readerIndex`, and of the first NUL byte read so far (Int.max if none).
    var streamOffset = 0
    var nulOffset = Int.max
    var failure: InputFileError?

    /// Opens `path`; `-` reads standard input. Errors name the file (missing, a directory, unreadable).
    public init(path: String, maxLine: Int = 1 << 20) throws(InputFileError) {
        if path == "-" {
            name = "<stdin>"
            fd = STDIN_FILENO
            ownsDescriptor = false
        } else {
            name = path
            fd = try FileInput.openFile(path, name: path)
            ownsDescriptor = true
        }
        self.maxLine = max(maxLine, 1)
        // Room for the longest line with CR LF plus one chunk: never grows.
        buffer = ByteBuffer(capacity: self.maxLine + 2 + LineReader.chunkSize)
    }

    deinit {
        if ownsDescriptor { close(fd) }
    }

    /// The next line without its terminator (CR LF or LF) and its 1-based number; nil at end of file.
    /// The bytes are valid until the next call. A line over `maxLine` bytes, a NUL byte or a read error throws.
    public func next() throws(InputFileError) -> (line: UnsafeRawBufferPointer, number: Int)? {
        if let failure { throw failure }
        if pending > 0 {
            buffer.consume(pending)
            streamOffset += pending
            pending = 0
        }
        var scanned = 0  // bytes already known to hold no LF
        while true {
            let readable = buffer.readableBytes
            let base = UnsafeRawPointer(buffer.readPointer)
            if readable > scanned, let hit = memchr(base + scanned, 0x0A, readable - scanned) {
                let lf = UnsafeRawPointer(hit) - base
                return try deliver(length: lf, consumed: lf + 1)
            }
            scanned = readable
            if atEOF {
                if readable == 0 { return nil }
                return try deliver(length: readable, consumed: readable)
            }
            // No LF: a line longer than maxLine (plus CR LF) can never become valid, so stop buffering it.
            if readable > maxLine + 1 {
                lineNumber += 1
                throw fail(line: lineNumber, "line longer than \(maxLine) bytes")
            }
            try fill()
        }
    }

    private func deliver(length: Int, consumed: Int) throws(InputFileError) -> (line: UnsafeRawBufferPointer, number: Int) {
        lineNumber += 1
        var end = length
        let base = UnsafeRawPointer(buffer.readPointer)
        if end > 0 && base.load(fromByteOffset: end - 1, as: UInt8.self) == 0x0D { end -= 1 }
        if nulOffset < streamOffset + consumed {
            throw fail(line: lineNumber, "contains a NUL byte: not a text file")
        }
        if end > maxLine {
            throw fail(line: lineNumber, "line longer than \(maxLine) bytes")
        }
        pending = consumed
        return (UnsafeRawBufferPointer(start: base, count: end), lineNumber)
    }

    private func fail(line: Int?, _ message: String) -> InputFileError {
        let error = InputFileError(file: name, line: line, message: message)
        failure = error
        return error
    }

    private func fill() throws(InputFileError) {
        if buffer.writableBytes < LineReader.chunkSize { buffer.discardReadBytes() }
        buffer.reserveWritable(LineReader.chunkSize)
        while true {
            let n = read(fd, buffer.writePointer, buffer.writableBytes)
            if n > 0 {
                if nulOffset == Int.max, let hit = memchr(buffer.writePointer, 0, n) {
                    let at = UnsafeRawPointer(hit) - UnsafeRawPointer(buffer.readPointer)
                    nulOffset = streamOffset + at
                }
                buffer.didWrite(n)
                return
            }
            if n == 0 { atEOF = true; return }
            if errno == EINTR { continue }
            throw fail(line: nil, FileInput.describe(errno: errno))
        }
    }
}

/// One well-formed line of a commands file.
public struct CommandEntry: Sendable, Equatable {
    public var device: DeviceAddress
    /// `device:command` as written (surrounding blanks trimmed): what goes on the wire and into the output.
    public var item: String
    /// Offset of the command inside `item`.
    public var commandStart: Int
    public var line: Int
    public init(device: DeviceAddress, item: String, commandStart: Int, line: Int) {
        self.device = device
        self.item = item
        self.commandStart = commandStart
        self.line = line
    }
    public var command: String { String(decoding: item.utf8.dropFirst(commandStart), as: UTF8.self) }
}

public enum CommandsFile {
    public enum Line: Equatable, Sendable {
        case command(CommandEntry)
        /// Blank or `#` comment.
        case skip
        case malformed(InputFileError)
    }

    public static func parse(line: UnsafeRawBufferPointer, number: Int, fileName: String) -> Line {
        switch parseInPlace(line: line) {
        case .command(let device, let item, let commandStart):
            return .command(CommandEntry(device: device, item: String(decoding: item, as: UTF8.self),
                                         commandStart: commandStart, line: number))
        case .skip:
            return .skip
        case .malformed(let reason):
            return .malformed(malformedError(reason, number: number, fileName: fileName))
        }
    }

    /// One line parsed without copying: a well-formed command's item is a view into `line`.
    package enum LineInPlace {
        /// `item`: `device:command` with surrounding blanks trimmed; the command starts at `commandStart` in it.
        case command(device: DeviceAddress, item: UnsafeRawBufferPointer, commandStart: Int)
        case skip
        case malformed(ItemSyntax.ItemError)
    }

    /// Like `parse`, without building a `CommandEntry`: for readers that only need the bytes (a client that
    /// sends commands without keeping per-command results makes no String per command).
    @inline(__always)
    package static func parseInPlace(line: UnsafeRawBufferPointer) -> LineInPlace {
        // The common line, a dotted quad item with nothing around it, parses as is: nothing to trim (a blank, a
        // CR or a leading '#' all fail the fast parse, which then leaves the line to the general path).
        if let fast = ItemSyntax.parseIPv4Item(line) {
            return .command(device: fast.device, item: line, commandStart: fast.commandStart)
        }
        var s = 0
        var e = line.count
        while s < e && (line[s] == 0x20 || line[s] == 0x09) { s += 1 }
        while e > s && (line[e - 1] == 0x20 || line[e - 1] == 0x09 || line[e - 1] == 0x0D) { e -= 1 }
        if s == e || line[s] == UInt8(ascii: "#") { return .skip }
        let item = UnsafeRawBufferPointer(rebasing: line[s..<e])
        switch ItemSyntax.parse(item) {
        case .success(let parsed):
            return .command(device: parsed.device, item: item, commandStart: parsed.commandStart)
        case .failure(let reason):
            return .malformed(reason)
        }
    }

    /// The error of a malformed line, as `parse` reports it.
    package static func malformedError(_ reason: ItemSyntax.ItemError, number: Int, fileName: String) -> InputFileError {
        InputFileError(file: fileName, line: number, message: "expected ip:command: \(reason)")
    }
}
