// Wire protocol v1 (docs/PROTOCOL.md), the client's side: formats requests, parses reply lines. No sockets.

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
