import Glibc

/// Streaming reader for line-based input files: reads in large chunks, hands out each line in place.
///
/// Memory stays at `maxLine + chunk` bytes whatever the file size: a line is handed out as a view into the
/// buffer, consumed on the next call, and the unread tail is moved to the front before each read.
///
/// A pipe, FIFO or terminal (`isStream`) can make read(2) wait for as long as its writer pauses. A caller that
/// must not wait (the client's event loop) installs a `LineFeed` that reads on another thread, and calls
/// `nextIfReady()`, which says `.notYet` instead of waiting.
public final class LineReader {
    public let name: String
    public static let chunkSize = 1 << 20

    private(set) var fd: Int32
    private(set) var ownsDescriptor: Bool
    /// Not a regular file: reads may wait for a writer.
    package let isStream: Bool
    /// Where bytes come from instead of read(2) on `fd`, once installed.
    package private(set) var feed: (any LineFeed)?
    let maxLine: Int
    let buffer: ByteBuffer
    /// Bytes of the lines handed out and still in the buffer (terminators included: one line's after `next()`,
    /// several after `readLines`), dropped at the start of the next call.
    var pending = 0
    /// Readable bytes already known to hold no LF (kept across `.notYet`, so a long line arriving in small
    /// pieces is scanned once).
    var scanned = 0
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
        var st = stat()
        isStream = fstat(fd, &st) != 0 || (st.st_mode & S_IFMT) != S_IFREG
        self.maxLine = max(maxLine, 1)
        // Room for the longest line with CR LF plus one chunk: never grows.
        buffer = ByteBuffer(capacity: self.maxLine + 2 + LineReader.chunkSize)
    }

    deinit {
        feed?.stop()
        if ownsDescriptor { close(fd) }
    }

    /// Hands the descriptor to the feed that `makeFeed` builds from it (and from whether closing it is the
    /// feed's job now): from here on, bytes come from the feed. Returns false, and keeps reading the
    /// descriptor itself, when `makeFeed` returns nil.
    package func install(feed makeFeed: (_ fd: Int32, _ ownsDescriptor: Bool) -> (any LineFeed)?) -> Bool {
        guard feed == nil, let made = makeFeed(fd, ownsDescriptor) else { return false }
        feed = made
        ownsDescriptor = false
        return true
    }

    /// The next line without its terminator (CR LF or LF) and its 1-based number; nil at end of file.
    /// The bytes are valid until the next call. A line over `maxLine` bytes, a NUL byte or a read error throws.
    /// Waits for input when there is none yet (also with a feed installed).
    public func next() throws(InputFileError) -> (line: UnsafeRawBufferPointer, number: Int)? {
        switch try advance(wait: true) {
        case .line(let line, let number): return (line, number)
        case .end, .notYet: return nil
        }
    }

    package enum Next {
        case line(UnsafeRawBufferPointer, number: Int)
        /// The input has nothing more yet (only with a feed installed); the feed wakes its consumer.
        case notYet
        case end
    }

    /// Like `next()`, but never waits when a feed is installed: `.notYet` when no complete line has arrived.
    package func nextIfReady() throws(InputFileError) -> Next {
        try advance(wait: false)
    }

    /// How `readLines` stopped.
    package enum Stop: Equatable {
        /// `body` accepted `limit` lines.
        case limit
        /// The input has nothing more yet (only with a feed installed); the feed wakes its consumer.
        case notYet
        case end
    }

    /// The lines of `nextIfReady()`, in order, to `body` (the line without its terminator, valid during the call,
    /// and its number), until `body` has accepted `limit` of them (it returns whether it counts the line).
    /// `accepted` counts them. Never waits when a feed is installed. An error is thrown at the line it belongs
    /// to, as `next()` throws it.
    ///
    /// Why a loop here: the lines already in the buffer are framed one after the other and dropped once; a call
    /// of `nextIfReady()` per line, and its bookkeeping, cost the client ~5% of its CPU with 16-byte commands
    /// (10M x 1 s, CLI defaults: 1.420 -> 1.345 s user + sys, medians of 8 interleaved runs, load 4.7-5.2).
    package func readLines(limit: Int, accepted: inout Int,
                           _ body: (UnsafeRawBufferPointer, Int) -> Bool) throws(InputFileError) -> Stop {
        while accepted < limit {
            switch try advance(wait: false) {
            case .line(let line, let number):
                if body(line, number) { accepted += 1 }
                // The complete lines after it, in place (`pending` covers every line handed out).
                let view = buffer.readableView
                while accepted < limit,
                      case .line(let line, let consumed) = LineFramer.next(
                          in: UnsafeRawBufferPointer(rebasing: view[pending...]), maxLine: maxLine + 2) {
                    let delivered = try deliver(line, consumed: consumed, from: pending)
                    if body(delivered, lineNumber) { accepted += 1 }
                }
            case .notYet:
                return .notYet
            case .end:
                return .end
            }
        }
        return .limit
    }

    private func advance(wait: Bool) throws(InputFileError) -> Next {
        if let failure { throw failure }
        if pending > 0 {
            buffer.consume(pending)
            streamOffset += pending
            pending = 0
            scanned = 0
        }
        while true {
            let view = buffer.readableView
            // maxLine + 2: the longest line still valid with its CR LF. Without an LF that far, the line can
            // never become valid, so it is not buffered any further.
            switch LineFramer.next(in: view, maxLine: maxLine + 2, scanned: scanned) {
            case .line(let line, let consumed):
                return .line(try deliver(line, consumed: consumed), number: lineNumber)
            case .tooLong:
                lineNumber += 1
                throw fail(line: lineNumber, "line longer than \(maxLine) bytes")
            case .incomplete:
                scanned = view.count
                if atEOF {
                    if view.isEmpty { return .end }
                    return .line(try deliver(LineFramer.unterminated(view), consumed: view.count), number: lineNumber)
                }
                guard try fill(wait: wait) else { return .notYet }
            }
        }
    }

    /// The line that takes `consumed` bytes from `from` bytes past the buffer's reader index (after the lines
    /// handed out before it), checked.
    @inline(__always)
    private func deliver(_ line: UnsafeRawBufferPointer, consumed: Int, from: Int = 0) throws(InputFileError) -> UnsafeRawBufferPointer {
        lineNumber += 1
        if nulOffset < streamOffset + from + consumed {
            throw fail(line: lineNumber, "contains a NUL byte: not a text file")
        }
        if line.count > maxLine {
            throw fail(line: lineNumber, "line longer than \(maxLine) bytes")
        }
        pending = from + consumed
        return line
    }

    private func fail(line: Int?, _ message: String) -> InputFileError {
        let error = InputFileError(file: name, line: line, message: message)
        failure = error
        return error
    }

    /// Reads more bytes (or notes the end of the input). Returns false when a feed has nothing yet and `wait`
    /// is false.
    private func fill(wait: Bool) throws(InputFileError) -> Bool {
        if buffer.writableBytes < LineReader.chunkSize { buffer.discardReadBytes() }
        buffer.reserveWritable(LineReader.chunkSize)
        while true {
            let n: Int
            if let feed {
                switch feed.take(into: buffer.writePointer, count: buffer.writableBytes, wait: wait) {
                case .bytes(let count): n = count
                case .end: n = 0
                case .notYet: return false
                case .failed(let e): throw fail(line: nil, FileInput.describe(errno: e))
                }
            } else {
                n = read(fd, buffer.writePointer, buffer.writableBytes)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw fail(line: nil, FileInput.describe(errno: errno))
                }
            }
            if n > 0 {
                if nulOffset == Int.max, let hit = memchr(buffer.writePointer, 0, n) {
                    let at = UnsafeRawPointer(hit) - UnsafeRawPointer(buffer.readPointer)
                    nulOffset = streamOffset + at
                }
                buffer.didWrite(n)
            } else {
                atEOF = true
            }
            return true
        }
    }
}

/// Bytes for a `LineReader` from somewhere that must not be waited on by its consumer, e.g. a pipe read on
/// another thread.
package protocol LineFeed: AnyObject {
    /// Copies up to `count` bytes to `into`. With `wait` false, returns `.notYet` at once when nothing has
    /// arrived (and wakes the consumer when something does); with `wait` true, waits for bytes or the end.
    func take(into: UnsafeMutableRawPointer, count: Int, wait: Bool) -> LineFeedResult
    /// The consumer is gone: stop reading (and close the descriptor if the feed owns it).
    func stop()
}

package enum LineFeedResult: Equatable {
    case bytes(Int)
    case notYet
    case end
    /// A read error (errno).
    case failed(Int32)
}
