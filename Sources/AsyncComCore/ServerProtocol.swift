// Wire protocol v1 (docs/PROTOCOL.md), the server's side: parses request lines, formats replies. No sockets.

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
        // Each item's bucket is also prefetched as soon as its hash is known, while the rest of the group is
        // parsed: the probe loop alone did not keep the misses in flight together (a key found in a bucket's
        // second slot, or one bucket on, is a branch the CPU guesses wrong, and the loads after it start over),
        // and with the table in small pages right after loading each probe also waits for a page walk. Measured
        // (3M commands, 1M-entry map, release server + asynccom-client, medians of 10 interleaved runs, load
        // 3.3-3.5): server CPU with zero waits 416 -> 363 ms, with 1 s waits 492 -> 472 ms; perf had put 41% of
        // this function's samples on the first probe's load.
        return withUnsafeTemporaryAllocation(of: Probe.self, capacity: probeGroup) { probes -> Outcome in
            while true {
                var grouped = 0
                while grouped < probeGroup {
                    while i < n && Wire.isBlank(p, i) { i += 1 }
                    if i == n { break }
                    let itemStart = i
                    // A word at a time, and the command below compared as one word: with byte loops here, in the
                    // command's hash and in its comparison, an item cost 658 instructions in this function, now
                    // 531 (callgrind, 160,000 commands in lines of 16); server CPU for 3M commands against the
                    // 1M-entry map (medians of 10 interleaved runs, load 3.5-4.1): zero waits 360 -> 312 ms,
                    // 1 s waits 442 -> 410 ms.
                    i = Wire.nextBlank(p, from: i, count: n)
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
                        let command = map.commandKey(
                            p + itemStart + parsed.commandStart, item.count - parsed.commandStart,
                            readableBefore: parsed.commandStart)
                        let device = parsed.device
                        var hash: UInt64 = 0
                        if command != 0 {
                            hash = DeviceMap.hash(high: device.high, low: device.low, command: command)
                            map.prefetch(high: device.high, low: device.low, hash: hash)
                        }
                        probes[grouped] = Probe(high: device.high, low: device.low, command: command, hash: hash, slot: nil)
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

    /// Starts loading the map buckets of the items of a short `REQ` line that will be handled next (a hint: no
    /// output, no effect on any result). For requests of one or a few items a probe group is too small to
    /// overlap anything: each request waited out its own cache miss. Only lines of at most `lookaheadBytes`
    /// bytes, only IPv4 items (the fast parser), at most `lookaheadItems` of them; anything else is skipped
    /// where it stops looking like a request.
    @inline(__always)
    public static func prefetch(line: UnsafeRawBufferPointer, map: DeviceMap) {
        let n = line.count
        guard n <= lookaheadBytes, let p = line.baseAddress else { return }
        var i = 0
        while i < n && Wire.isBlank(p, i) { i += 1 }
        let verbStart = i
        i = Wire.nextBlank(p, from: i, count: n)
        guard i &- verbStart == 3, Wire.verb(UnsafeRawBufferPointer(start: p + verbStart, count: 3), is: "req") else {
            return
        }
        while i < n && Wire.isBlank(p, i) { i += 1 }
        i = Wire.nextBlank(p, from: i, count: n)  // the id
        for _ in 0..<lookaheadItems {
            while i < n && Wire.isBlank(p, i) { i += 1 }
            if i == n { return }
            let itemStart = i
            i = Wire.nextBlank(p, from: i, count: n)
            guard let parsed = ItemSyntax.parseIPv4Item(UnsafeRawBufferPointer(start: p + itemStart, count: i &- itemStart))
            else { return }
            let command = map.commandKey(
                p + itemStart + parsed.commandStart, i &- itemStart &- parsed.commandStart,
                readableBefore: parsed.commandStart)
            if command != 0 {
                let device = parsed.device
                map.prefetch(
                    high: device.high, low: device.low,
                    hash: DeviceMap.hash(high: device.high, low: device.low, command: command))
            }
        }
    }

    /// Lines longer than this are not looked ahead into (`prefetch(line:map:)`): they have enough items for
    /// their own probe groups to overlap the misses.
    public static let lookaheadBytes = 128
    static let lookaheadItems = 4

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
