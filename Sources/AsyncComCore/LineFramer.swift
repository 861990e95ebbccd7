#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds LF-terminated lines in place in a buffer (a CR before the LF is dropped), without copying.
public enum LineFramer {
    public enum Next {
        /// A complete line without its terminator; `consumed` counts the terminator too.
        case line(UnsafeRawBufferPointer, consumed: Int)
        /// No LF yet and fewer than `maxLine` bytes buffered.
        case incomplete
        /// No LF within `maxLine` bytes.
        case tooLong
    }

    /// Looks for the next line at the start of `bytes`. `maxLine` counts the terminator.
    @inline(__always)
    public static func next(in bytes: UnsafeRawBufferPointer, maxLine: Int) -> Next {
        let count = bytes.count
        guard count > 0, let base = bytes.baseAddress else { return maxLine <= 0 ? .tooLong : .incomplete }
        // Only the first maxLine bytes may hold the LF: a peer cannot make us scan (or buffer) more.
        let limit = min(count, maxLine)
        guard limit > 0, let hit = memchr(base, 0x0A, limit) else {
            return count >= maxLine ? .tooLong : .incomplete
        }
        let lf = UnsafeRawPointer(hit) - base
        var end = lf
        if end > 0 && base.load(fromByteOffset: end - 1, as: UInt8.self) == 0x0D { end -= 1 }
        return .line(UnsafeRawBufferPointer(start: base, count: end), consumed: lf + 1)
    }
}
