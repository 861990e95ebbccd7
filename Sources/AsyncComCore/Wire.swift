// Wire protocol v1 (docs/PROTOCOL.md): what both sides share, the error codes and the byte-level helpers.

public enum ProtocolErrorCode: String, Sendable, CaseIterable {
    case unknownVerb = "UNKNOWN_VERB"
    case badID = "BAD_ID"
    case noItems = "NO_ITEMS"
    case tooManyItems = "TOO_MANY_ITEMS"
    case badItem = "BAD_ITEM"
    case unsupportedVersion = "UNSUPPORTED_VERSION"
    case badRequest = "BAD_REQUEST"
    case lineTooLong = "LINE_TOO_LONG"
    case busy = "BUSY"
    case idleTimeout = "IDLE_TIMEOUT"
    case authRequired = "AUTH_REQUIRED"
    case authFailed = "AUTH_FAILED"
    case authTimeout = "AUTH_TIMEOUT"
    case tlsRequired = "TLS_REQUIRED"
    /// HTTP only (docs/openapi.yaml): no such path, or not with this method.
    case notFound = "NOT_FOUND"
    case methodNotAllowed = "METHOD_NOT_ALLOWED"
}

/// Byte-level helpers shared by both sides of the protocol.
enum Wire {
    /// A blank: SP or HTAB, what separates tokens on a line (the one definition; file lines are trimmed of
    /// blanks by `LineFramer.trimmed`).
    @inline(__always) static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    @inline(__always) static func isBlank(_ p: UnsafeRawPointer, _ i: Int) -> Bool {
        isBlank(p.load(fromByteOffset: i, as: UInt8.self))
    }

    /// The index of the first blank at or after `start`, or `n` when there is none. Eight bytes a step where
    /// eight remain (a word compared with all-SP and all-HTAB at once), the rest byte by byte.
    @inline(__always) static func nextBlank(_ p: UnsafeRawPointer, from start: Int, count n: Int) -> Int {
        var i = start
        while i &+ 8 <= n {
            let w = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            let sp = w ^ 0x2020_2020_2020_2020
            let tab = w ^ 0x0909_0909_0909_0909
            // The lowest byte flagged is the first zero byte of `sp` or `tab` exactly (a borrow can only flag
            // bytes above a zero byte).
            let zero = ((sp &- 0x0101_0101_0101_0101) & ~sp | (tab &- 0x0101_0101_0101_0101) & ~tab)
                & 0x8080_8080_8080_8080
            if zero != 0 { return i &+ zero.trailingZeroBitCount &>> 3 }
            i &+= 8
        }
        while i < n && !isBlank(p, i) { i &+= 1 }
        return i
    }

    /// ASCII case-insensitive comparison with a lowercase literal of the same length.
    @inline(__always) static func verb(_ token: UnsafeRawBufferPointer, is lowercase: StaticString) -> Bool {
        let n = lowercase.utf8CodeUnitCount
        guard token.count == n else { return false }
        let lit = lowercase.utf8Start
        for k in 0..<n where token[k] | 0x20 != lit[k] { return false }
        return true
    }

    /// The next blank-separated token at or after `start` (empty at end of line).
    @inline(__always) static func token(_ p: UnsafeRawPointer, from start: Int, count n: Int) -> UnsafeRawBufferPointer {
        var i = start
        while i < n && isBlank(p, i) { i += 1 }
        let s = i
        i = nextBlank(p, from: i, count: n)
        return UnsafeRawBufferPointer(start: p + s, count: i - s)
    }

    /// The rest of the line after `start`, blanks trimmed on both sides.
    static func rest(_ p: UnsafeRawPointer, from start: Int, count n: Int) -> String {
        var s = start
        var e = n
        while s < e && isBlank(p, s) { s += 1 }
        while e > s && isBlank(p, e - 1) { e -= 1 }
        return String(decoding: UnsafeRawBufferPointer(start: p + s, count: e - s), as: UTF8.self)
    }

    /// 1-20 decimal digits with a value of at most UInt64.max.
    @inline(__always) static func parseID(_ text: UnsafeRawBufferPointer) -> UInt64? {
        let n = text.count
        guard n > 0 && n <= 20 else { return nil }
        var value: UInt64 = 0
        for k in 0..<n {
            let d = text[k] &- 0x30
            guard d < 10 else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(d))
            guard !o1 && !o2 else { return nil }
            value = s
        }
        return value
    }

    /// Echoes peer bytes into a reply line: CR, LF and other control bytes (except HTAB) become `?`, so the
    /// echo can never split or corrupt the line.
    static func appendSanitized(_ bytes: UnsafeRawBufferPointer, to buffer: ByteBuffer) {
        buffer.reserveWritable(bytes.count)
        for c in bytes { buffer.append(byte: c < 0x20 && c != 0x09 || c == 0x7F ? UInt8(ascii: "?") : c) }
    }

    /// Appends text of our own making; CR and LF (and, with `blanksToo`, SP and HTAB) become `_`/space so the
    /// line structure survives whatever the caller passed.
    static func appendSanitized(_ text: String, to buffer: ByteBuffer, blanksToo: Bool) {
        for c in text.utf8 {
            switch c {
            case 0x0A, 0x0D: buffer.append(byte: blanksToo ? UInt8(ascii: "_") : 0x20)
            case 0x20, 0x09: buffer.append(byte: blanksToo ? UInt8(ascii: "_") : c)
            default: buffer.append(byte: c)
            }
        }
    }

    /// Bytes quoted for a message (peer input in an error reply, a field of a file in a `FILE:LINE` error):
    /// printable ASCII (0x20-0x7E) as it is, every other byte as `?`, at most `limit` bytes and then `...` when
    /// cut, so that neither binary nor a huge line can break a reply line or flood a terminal or log.
    @inline(__always) static func forEachPrintable(_ bytes: UnsafeRawBufferPointer, limit: Int, _ emit: (UInt8) -> Void) {
        for c in bytes.prefix(max(limit, 0)) { emit(c >= 0x20 && c < 0x7F ? c : UInt8(ascii: "?")) }
        if bytes.count > limit { for _ in 0..<3 { emit(UInt8(ascii: ".")) } }
    }

    /// `forEachPrintable` into a reply.
    static func appendPrintable(_ bytes: UnsafeRawBufferPointer, limit: Int, to buffer: ByteBuffer) {
        forEachPrintable(bytes, limit: limit) { buffer.append(byte: $0) }
    }

    /// `forEachPrintable` as a String (32 bytes for a token, `fileQuoteLimit` for a field or line of a file).
    static func printable(_ bytes: UnsafeRawBufferPointer, limit: Int = 32) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(min(bytes.count, limit) + 3)
        forEachPrintable(bytes, limit: limit) { out.append($0) }
        return String(decoding: out, as: UTF8.self)
    }

    /// How much of a file's field or line an error message quotes.
    static let fileQuoteLimit = 80
}
