/// Wire protocol v1 (docs/PROTOCOL.md): pure parsing and formatting, no sockets.
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

/// What the server advertises in its HELLO reply.
public struct HelloInfo: Sendable, Equatable {
    public var serverVersion: String
    public var maxItems: Int
    public var maxLine: Int
    public var maxInflight: Int
    public var reactors: Int
    public var reactor: Int
    /// Which device map the connection's reactor answers from: 1 at start, one more after each map reload.
    public var mapGeneration: UInt64
    public init(serverVersion: String, maxItems: Int, maxLine: Int, maxInflight: Int, reactors: Int, reactor: Int,
                mapGeneration: UInt64 = 1) {
        self.serverVersion = serverVersion
        self.maxItems = maxItems
        self.maxLine = maxLine
        self.maxInflight = maxInflight
        self.reactors = reactors
        self.reactor = reactor
        self.mapGeneration = mapGeneration
    }
}

public enum ServerProtocol {
    public static let version: UInt64 = 1

    public enum Outcome: Equatable, Sendable {
        /// Blank line: nothing to send.
        case empty
        /// A `RES` line was appended to `reply`; it is due `waitNanos` after arrival (the slowest item).
        case request(id: UInt64, waitNanos: UInt64, commands: Int, unknown: Int)
        /// An `ERR` line was appended to `reply`; `close` when the connection must close after flushing it.
        case error(ProtocolErrorCode, close: Bool)
        /// `HELLO 1`: the caller appends its HELLO line with `appendHello`. (Other versions give `.error`.)
        case hello
        /// A `PONG` line was appended.
        case ping
        /// The caller appends its STATS line.
        case stats
        /// `BYE` was appended; the caller closes after flushing.
        case quit
    }

    /// Handles one request line (terminator already stripped), appending at most one reply line to `reply`.
    /// Looks every item of a REQ up in `map`. Allocates nothing for REQ lines.
    public static func handle(line: UnsafeRawBufferPointer, map: DeviceMap, maxItems: Int, reply: ByteBuffer) -> Outcome {
        let n = line.count
        guard n > 0, let p = line.baseAddress else { return .empty }
        var i = 0
        while i < n && Wire.isBlank(p, i) { i += 1 }
        if i == n { return .empty }
        let verbStart = i
        while i < n && !Wire.isBlank(p, i) { i += 1 }
        let verb = UnsafeRawBufferPointer(start: p + verbStart, count: i - verbStart)
        switch verb.count {
        case 3 where Wire.verb(verb, is: "req"):
            return handleRequest(p, from: i, count: n, map: map, maxItems: maxItems, reply: reply)
        case 4 where Wire.verb(verb, is: "ping"):
            var s = i
            var e = n
            while s < e && Wire.isBlank(p, s) { s += 1 }
            while e > s && Wire.isBlank(p, e - 1) { e -= 1 }
            if s == e {
                reply.append("PONG\n")
            } else {
                reply.append("PONG ")
                Wire.appendSanitized(UnsafeRawBufferPointer(start: p + s, count: e - s), to: reply)
                reply.append(byte: 0x0A)
            }
            return .ping
        case 4 where Wire.verb(verb, is: "quit"):
            reply.append("BYE\n")
            return .quit
        case 5 where Wire.verb(verb, is: "hello"):
            let token = Wire.token(p, from: i, count: n)
            guard token.count > 0 else {
                appendErrorHead(id: nil, code: .badRequest, to: reply)
                reply.append("HELLO needs a version: HELLO 1\n")
                return .error(.badRequest, close: false)
            }
            guard token.count == 1 && token[0] == UInt8(ascii: "1") else {
                appendErrorHead(id: nil, code: .unsupportedVersion, to: reply)
                reply.append("this server speaks version 1\n")
                return .error(.unsupportedVersion, close: false)
            }
            return .hello
        case 5 where Wire.verb(verb, is: "stats"):
            return .stats
        default:
            appendErrorHead(id: nil, code: .unknownVerb, to: reply)
            reply.append("unknown verb '")
            Wire.appendPrintable(verb, limit: 32, to: reply)
            reply.append("'\n")
            return .error(.unknownVerb, close: false)
        }
    }

    @inline(__always)
    static func handleRequest(_ p: UnsafeRawPointer, from start: Int, count n: Int, map: DeviceMap, maxItems: Int,
                              reply: ByteBuffer) -> Outcome {
        var i = start
        while i < n && Wire.isBlank(p, i) { i += 1 }
        let idStart = i
        while i < n && !Wire.isBlank(p, i) { i += 1 }
        let idText = UnsafeRawBufferPointer(start: p + idStart, count: i - idStart)
        guard let id = Wire.parseID(idText) else {
            appendErrorHead(id: nil, code: .badID, to: reply)
            if idText.isEmpty {
                reply.append("missing request id: expected REQ <id> <device:command>...\n")
            } else {
                reply.append("invalid request id '")
                Wire.appendPrintable(idText, limit: 32, to: reply)
                reply.append("': expected 1-20 digits, at most 18446744073709551615\n")
            }
            return .error(.badID, close: false)
        }

        // Marked by length, not by writerIndex: appends below may grow or compact the buffer.
        let mark = reply.readableBytes
        reply.append("RES ")
        reply.appendDecimal(id)
        var items = 0
        var unknown = 0
        var maxWait: UInt64 = 0
        // Items go in groups: first every item of a group is parsed and its hash slot computed, then the slots
        // are read. The reads of a group depend on nothing but the parse, so the CPU has several of their cache
        // misses in flight at once instead of waiting out each one in turn (a big map's table does not fit in
        // the cache: a miss per item was most of the server's time). A bad item still fails the whole request.
        return withUnsafeTemporaryAllocation(of: Probe.self, capacity: probeGroup) { probes -> Outcome in
            while true {
                var grouped = 0
                while grouped < probeGroup {
                    while i < n && Wire.isBlank(p, i) { i += 1 }
                    if i == n { break }
                    let itemStart = i
                    while i < n && !Wire.isBlank(p, i) { i += 1 }
                    items += 1
                    if items > maxItems {
                        reply.truncate(readableBytes: mark)
                        appendErrorHead(id: id, code: .tooManyItems, to: reply)
                        reply.append("at most ")
                        reply.appendDecimal(UInt64(max(maxItems, 0)))
                        reply.append(" items per request\n")
                        return .error(.tooManyItems, close: false)
                    }
                    let item = UnsafeRawBufferPointer(start: p + itemStart, count: i - itemStart)
                    switch ItemSyntax.parse(item) {
                    case .success(let parsed):
                        // 0 when the map has no entry with this command: the item is unknown, no slot to read.
                        let command = map.commandKey(p + itemStart + parsed.commandStart, item.count - parsed.commandStart)
                        let device = parsed.device
                        probes[grouped] = Probe(
                            high: device.high, low: device.low, command: command,
                            hash: command == 0 ? 0 : DeviceMap.hash(high: device.high, low: device.low, command: command),
                            slot: nil)
                    case .failure(let reason):
                        reply.truncate(readableBytes: mark)
                        appendErrorHead(id: id, code: .badItem, to: reply)
                        reply.append("item ")
                        reply.appendDecimal(UInt64(items))
                        reply.append(": ")
                        reply.append(string: reason.description)
                        reply.append(byte: 0x0A)
                        return .error(.badItem, close: false)
                    }
                    grouped += 1
                }
                // The probes alone first: a short loop of independent loads that the CPU overlaps; answering
                // (formatting, appending) in the same loop would fill its window before the next load issued.
                for k in 0..<grouped where probes[k].command != 0 {
                    let probe = probes[k]
                    probes[k].slot = map.find(high: probe.high, low: probe.low, command: probe.command, hash: probe.hash)
                }
                for k in 0..<grouped {
                    if let slot = probes[k].slot {
                        reply.append(byte: 0x20)
                        let wait = map.answer(slot, to: reply)
                        if wait > maxWait { maxWait = wait }
                    } else {
                        reply.append(" ?")
                        unknown += 1
                    }
                }
                if grouped < probeGroup { break }
            }
            guard items > 0 else {
                reply.truncate(readableBytes: mark)
                appendErrorHead(id: id, code: .noItems, to: reply)
                reply.append("expected REQ <id> <device:command>... with at least one item\n")
                return .error(.noItems, close: false)
            }
            reply.append(byte: 0x0A)
            return .request(id: id, waitNanos: maxWait, commands: items, unknown: unknown)
        }
    }

    /// Items parsed per group before their hash slots are read (see `handleRequest`).
    static let probeGroup = 16

    /// An item parsed and hashed, waiting for its slot to be read.
    struct Probe {
        var high: UInt64
        var low: UInt64
        var command: UInt32
        var hash: UInt64
        /// The value word of the key's slot once found; nil when the map has no such key (or before the lookup).
        var slot: UnsafePointer<UInt64>?
    }

    public static func appendHello(_ info: HelloInfo, to buffer: ByteBuffer) {
        buffer.append("HELLO 1 server=asynccom/")
        Wire.appendSanitized(info.serverVersion, to: buffer, blanksToo: true)
        buffer.append(" max_items=")
        buffer.appendDecimal(Int64(info.maxItems))
        buffer.append(" max_line=")
        buffer.appendDecimal(Int64(info.maxLine))
        buffer.append(" max_inflight=")
        buffer.appendDecimal(Int64(info.maxInflight))
        buffer.append(" reactors=")
        buffer.appendDecimal(Int64(info.reactors))
        buffer.append(" reactor=")
        buffer.appendDecimal(Int64(info.reactor))
        buffer.append(" map_generation=")
        buffer.appendDecimal(info.mapGeneration)
        buffer.append(byte: 0x0A)
    }

    /// `ERR <id or -> <CODE> <message>\n`
    public static func appendError(id: UInt64?, code: ProtocolErrorCode, message: String, to buffer: ByteBuffer) {
        appendErrorHead(id: id, code: code, to: buffer)
        Wire.appendSanitized(message, to: buffer, blanksToo: false)
        buffer.append(byte: 0x0A)
    }

    /// `ERR <id or -> <CODE> ` (with the trailing space, ready for the message).
    static func appendErrorHead(id: UInt64?, code: ProtocolErrorCode, to buffer: ByteBuffer) {
        buffer.append("ERR ")
        if let id { buffer.appendDecimal(id) } else { buffer.append(byte: UInt8(ascii: "-")) }
        buffer.append(byte: 0x20)
        buffer.append(string: code.rawValue)
        buffer.append(byte: 0x20)
    }

    /// `STATS k=v k=v ...\n` from ordered pairs.
    public static func appendStats(_ fields: [(String, UInt64)], to buffer: ByteBuffer) {
        buffer.append("STATS")
        for (key, value) in fields {
            buffer.append(byte: 0x20)
            Wire.appendSanitized(key, to: buffer, blanksToo: true)
            buffer.append(byte: UInt8(ascii: "="))
            buffer.appendDecimal(value)
        }
        buffer.append(byte: 0x0A)
    }
}

public enum ItemResult: Equatable, Sendable {
    case value(Int64)
    case unknown
}

public enum ServerReply: Equatable, Sendable {
    /// `RES <id> ...`: the results were written to the `results` array, one per item.
    case results(id: UInt64)
    case error(id: UInt64?, code: String, message: String)
    case hello(fields: [String: String])
    case pong(token: String?)
    case stats(fields: [String: String])
    case bye
    /// Not a valid v1 reply line.
    case malformed(reason: String)
}

public enum ClientProtocol {
    public static func appendHello(to buffer: ByteBuffer) {
        buffer.append("HELLO 1\n")
    }
    /// `HELLO 1 token=<token>` for servers that require authentication (docs/PROTOCOL.md, Authentication).
    public static func appendHello(token: String?, to buffer: ByteBuffer) {
        guard let token else { return appendHello(to: buffer) }
        buffer.append("HELLO 1 token=")
        Wire.appendSanitized(token, to: buffer, blanksToo: true)
        buffer.append(byte: 0x0A)
    }
    /// `REQ <id>`; follow with `appendItem` for each item and `endRequest`.
    public static func beginRequest(id: UInt64, to buffer: ByteBuffer) {
        buffer.append("REQ ")
        buffer.appendDecimal(id)
    }
    /// ` <item>` where item is `device:command` text as it should go on the wire. Inlinable: a client calls it
    /// once per command, and as a call across modules it cost a retain and a release of the buffer each time.
    @inlinable @inline(__always)
    public static func appendItem(_ item: UnsafeRawBufferPointer, to buffer: ByteBuffer) {
        buffer.reserveWritable(item.count + 1)
        buffer.append(byte: 0x20)
        buffer.append(item)
    }
    public static func appendItem(_ item: String, to buffer: ByteBuffer) {
        buffer.append(byte: 0x20)
        buffer.append(string: item)
    }
    public static func endRequest(to buffer: ByteBuffer) {
        buffer.append(byte: 0x0A)
    }

    /// Parses one reply line (terminator stripped). For `RES`, `results` is cleared and filled in item order
    /// (its capacity is reused, so steady-state parsing allocates nothing).
    public static func parse(line: UnsafeRawBufferPointer, results: inout [ItemResult]) -> ServerReply {
        let n = line.count
        guard n > 0, let p = line.baseAddress else { return .malformed(reason: "empty line") }
        var i = 0
        while i < n && Wire.isBlank(p, i) { i += 1 }
        let verbStart = i
        while i < n && !Wire.isBlank(p, i) { i += 1 }
        let verb = UnsafeRawBufferPointer(start: p + verbStart, count: i - verbStart)
        switch verb.count {
        case 3 where Wire.verb(verb, is: "res"):
            return parseResults(p, from: i, count: n, results: &results)
        case 3 where Wire.verb(verb, is: "err"):
            let idText = Wire.token(p, from: i, count: n)
            guard idText.count > 0 else { return .malformed(reason: "ERR without an id") }
            i = idText.baseAddress! - p + idText.count
            var id: UInt64?
            if !(idText.count == 1 && idText[0] == UInt8(ascii: "-")) {
                guard let parsed = Wire.parseID(idText) else {
                    return .malformed(reason: "ERR with a bad id '\(Wire.printable(idText))'")
                }
                id = parsed
            }
            let code = Wire.token(p, from: i, count: n)
            guard code.count > 0 else { return .malformed(reason: "ERR without a code") }
            i = code.baseAddress! - p + code.count
            return .error(id: id, code: String(decoding: code, as: UTF8.self), message: Wire.rest(p, from: i, count: n))
        case 3 where Wire.verb(verb, is: "bye"):
            return .bye
        case 4 where Wire.verb(verb, is: "pong"):
            let token = Wire.rest(p, from: i, count: n)
            return .pong(token: token.isEmpty ? nil : token)
        case 5 where Wire.verb(verb, is: "hello"):
            let version = Wire.token(p, from: i, count: n)
            guard version.count > 0 else { return .malformed(reason: "HELLO without a version") }
            i = version.baseAddress! - p + version.count
            guard var fields = parseFields(p, from: i, count: n) else {
                return .malformed(reason: "HELLO field without '='")
            }
            fields["version"] = String(decoding: version, as: UTF8.self)
            return .hello(fields: fields)
        case 5 where Wire.verb(verb, is: "stats"):
            guard let fields = parseFields(p, from: i, count: n) else {
                return .malformed(reason: "STATS field without '='")
            }
            return .stats(fields: fields)
        default:
            return .malformed(reason: verb.isEmpty ? "blank line" : "unknown reply '\(Wire.printable(verb))'")
        }
    }

    /// 1 to 18 decimal digits, no sign (cannot overflow); nil for anything else.
    @inline(__always)
    static func shortDecimal(_ token: UnsafeRawBufferPointer) -> Int64? {
        let n = token.count
        guard n > 0 && n <= 18 else { return nil }
        var value: Int64 = 0
        var k = 0
        while k < n {
            let d = token[k] &- 0x30
            guard d < 10 else { return nil }
            value = value &* 10 &+ Int64(d)
            k &+= 1
        }
        return value
    }

    static func parseResults(_ p: UnsafeRawPointer, from start: Int, count n: Int, results: inout [ItemResult]) -> ServerReply {
        var i = start
        // Cleared first, so that no malformed RES (not even one with a bad id) leaves the previous line's results.
        results.removeAll(keepingCapacity: true)
        let idText = Wire.token(p, from: i, count: n)
        guard let id = Wire.parseID(idText) else {
            return .malformed(reason: idText.isEmpty ? "RES without an id" : "RES with a bad id '\(Wire.printable(idText))'")
        }
        i = idText.baseAddress! - p + idText.count
        while true {
            while i < n && Wire.isBlank(p, i) { i += 1 }
            if i == n { break }
            let s = i
            while i < n && !Wire.isBlank(p, i) { i += 1 }
            let token = UnsafeRawBufferPointer(start: p + s, count: i - s)
            if let v = shortDecimal(token) {
                // The common result: a few digits. (The full parser below handles signs and overflow.)
                results.append(.value(v))
            } else if token.count == 1 && token[0] == UInt8(ascii: "?") {
                results.append(.unknown)
            } else if case .success(let v) = ResponseParser.parse(token) {
                results.append(.value(v))
            } else {
                let position = results.count + 1
                results.removeAll(keepingCapacity: true)
                return .malformed(reason: "RES \(id): result \(position) '\(Wire.printable(token))' is not a 64-bit integer or '?'")
            }
        }
        guard !results.isEmpty else { return .malformed(reason: "RES \(id) without results") }
        return .results(id: id)
    }

    /// `k=v` tokens up to the end of the line; nil when a token has no `=`.
    static func parseFields(_ p: UnsafeRawPointer, from start: Int, count n: Int) -> [String: String]? {
        var fields: [String: String] = [:]
        var i = start
        while true {
            while i < n && Wire.isBlank(p, i) { i += 1 }
            if i == n { return fields }
            let s = i
            var eq = -1
            while i < n && !Wire.isBlank(p, i) {
                if eq < 0 && p.load(fromByteOffset: i, as: UInt8.self) == UInt8(ascii: "=") { eq = i }
                i += 1
            }
            guard eq > s else { return nil }
            let key = String(decoding: UnsafeRawBufferPointer(start: p + s, count: eq - s), as: UTF8.self)
            fields[key] = String(decoding: UnsafeRawBufferPointer(start: p + eq + 1, count: i - eq - 1), as: UTF8.self)
        }
    }
}

/// Byte-level helpers shared by both sides of the protocol.
enum Wire {
    @inline(__always) static func isBlank(_ p: UnsafeRawPointer, _ i: Int) -> Bool {
        let c = p.load(fromByteOffset: i, as: UInt8.self)
        return c == 0x20 || c == 0x09
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
        while i < n && !isBlank(p, i) { i += 1 }
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

    /// At most `limit` bytes, non-printable bytes shown as `?` (for quoting peer input in error messages).
    static func appendPrintable(_ bytes: UnsafeRawBufferPointer, limit: Int, to buffer: ByteBuffer) {
        for c in bytes.prefix(limit) { buffer.append(byte: c >= 0x20 && c < 0x7F ? c : UInt8(ascii: "?")) }
    }

    static func printable(_ bytes: UnsafeRawBufferPointer, limit: Int = 32) -> String {
        String(decoding: bytes.prefix(limit).map { $0 >= 0x20 && $0 < 0x7F ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
    }
}
