import Glibc

/// The one line splitter: finds LF-terminated lines in place (a CR before the LF is dropped), without copying.
///
/// Everything that reads lines goes through it: the server's and the client's sockets (`next(in:maxLine:)`,
/// input that may still be arriving), `LineReader` (streamed files), and text wholly in memory (`Lines`: map
/// blocks, token files, HTTP text bodies, commands buffered in memory). `trimmed` says what a file line's
/// content is.
public enum LineFramer {
    public enum Next {
        /// A complete line without its terminator; `consumed` counts the terminator too.
        case line(UnsafeRawBufferPointer, consumed: Int)
        /// No LF yet and fewer than `maxLine` bytes buffered.
        case incomplete
        /// No LF within `maxLine` bytes.
        case tooLong
    }

    /// Looks for the next line at the start of `bytes`. `maxLine` counts the terminator. `scanned`: how many
    /// leading bytes are already known to hold no LF (a caller that saw `.incomplete` before and got more bytes
    /// since), so a long line arriving in small pieces is scanned once.
    @inline(__always)
    public static func next(in bytes: UnsafeRawBufferPointer, maxLine: Int, scanned: Int = 0) -> Next {
        let count = bytes.count
        guard count > 0, let base = bytes.baseAddress else { return maxLine <= 0 ? .tooLong : .incomplete }
        // Only the first maxLine bytes may hold the LF: a peer cannot make us scan (or buffer) more.
        let limit = min(count, maxLine)
        let from = min(max(scanned, 0), limit)
        guard limit > from, let hit = memchr(base + from, 0x0A, limit - from) else {
            return count >= maxLine ? .tooLong : .incomplete
        }
        let lf = UnsafeRawPointer(hit) - base
        return .line(withoutCR(UnsafeRawBufferPointer(start: base, count: lf)), consumed: lf + 1)
    }

    /// The last line of an input that ended without an LF: as a terminated line would be (a CR at its end dropped).
    @inline(__always)
    public static func unterminated(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        withoutCR(bytes)
    }

    @inline(__always)
    static func withoutCR(_ line: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard let base = line.baseAddress, line.count > 0,
              base.load(fromByteOffset: line.count - 1, as: UInt8.self) == 0x0D else { return line }
        return UnsafeRawBufferPointer(start: base, count: line.count - 1)
    }

    /// The lines of text wholly in memory, in order; the last one needs no LF. Each line is a view into `text`,
    /// without its LF (and a CR before it).
    public struct Lines {
        public let text: UnsafeRawBufferPointer
        /// Where the next line starts.
        public private(set) var offset: Int

        @inline(__always)
        public init(_ text: UnsafeRawBufferPointer, from offset: Int = 0) {
            self.text = text
            self.offset = offset
        }

        /// The next line, nil after the last.
        @inline(__always)
        public mutating func next() -> UnsafeRawBufferPointer? {
            let count = text.count
            guard offset < count, let base = text.baseAddress else { return nil }
            let start = base + offset
            if let hit = memchr(start, 0x0A, count - offset) {
                let lf = UnsafeRawPointer(hit) - base
                defer { offset = lf + 1 }
                return LineFramer.withoutCR(UnsafeRawBufferPointer(start: start, count: lf - offset))
            }
            defer { offset = count }
            return LineFramer.unterminated(UnsafeRawBufferPointer(start: start, count: count - offset))
        }
    }

    /// A file line's content (commands files, maps, token files, text bodies): without the blanks (SP, HTAB)
    /// around it and without CRs at its end (a stray CR from CR CR LF). Empty for a blank line.
    @inline(__always)
    public static func trimmed(_ line: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard let base = line.baseAddress else { return line }
        var s = 0
        var e = line.count
        while s < e && Wire.isBlank(base.load(fromByteOffset: s, as: UInt8.self)) { s += 1 }
        while e > s {
            let c = base.load(fromByteOffset: e - 1, as: UInt8.self)
            guard Wire.isBlank(c) || c == 0x0D else { break }
            e -= 1
        }
        return UnsafeRawBufferPointer(start: base + s, count: e - s)
    }
}
