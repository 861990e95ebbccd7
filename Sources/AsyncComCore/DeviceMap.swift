#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The device map: `(device, command) -> (response, wait)`, loaded once and shared read-only by all reactors.
/// Lookups are O(1) and allocate nothing: they hash the command's bytes straight from the request buffer.
///
/// Layout (no per-entry Swift objects, so a million entries cost a few plain allocations and no ARC traffic):
/// - `entries`: one fixed-size POD record per entry (address, response, wait, offsets into the arenas);
/// - `commandArena`: every command's bytes back to back; `responseArena`: every response pre-rendered as decimal;
/// - `slots`: an open-addressing table (linear probing, at most half full) of `hash tag << 32 | entry + 1`,
///   0 meaning empty. The tag (high 32 hash bits) rejects almost every non-matching slot without touching the
///   entry. The table is built from a trusted file and only read afterwards, so peers cannot grow probe chains.
public final class DeviceMap: @unchecked Sendable {  // immutable after init
    /// The largest wait a map may give (one day): a longer one is surely a typo and would pin memory.
    public static let maxWaitNanos: UInt64 = 86_400 * 1_000_000_000

    @usableFromInline struct Entry {
        @usableFromInline var high: UInt64
        @usableFromInline var low: UInt64
        @usableFromInline var response: Int64
        @usableFromInline var wait: UInt64
        @usableFromInline var commandOffset: UInt32
        @usableFromInline var responseOffset: UInt32
        @usableFromInline var line: UInt32
        @usableFromInline var commandLength: UInt8
        @usableFromInline var responseLength: UInt8
    }

    @usableFromInline let entries: UnsafeMutablePointer<Entry>
    @usableFromInline let entryCount: Int
    @usableFromInline let commandArena: UnsafeMutablePointer<UInt8>
    @usableFromInline let responseArena: UnsafeMutablePointer<UInt8>
    @usableFromInline let slots: UnsafeMutablePointer<UInt64>
    @usableFromInline let slotMask: Int
    @usableFromInline let maxWait: UInt64
    let memory: [LargeMemory]

    /// Loads `ip:command:response:wait` lines. Throws on the first bad line, a duplicate key, or a file that
    /// cannot be read (missing, a directory, not text).
    public convenience init(contentsOfFile path: String) throws(InputFileError) {
        let file = try FileInput.readAll(path)
        try self.init(parsing: file.bytes, fileName: path)
    }

    public init(parsing data: UnsafeRawBufferPointer, fileName: String) throws(InputFileError) {
        var loader = try MapLoader(data: data, fileName: fileName)
        do {
            try loader.run()
        } catch {
            loader.deallocate()
            throw error
        }
        let built = loader.finish()
        memory = built.memory
        entries = built.entries
        entryCount = built.count
        commandArena = built.commandArena
        responseArena = built.responseArena
        slots = built.slots
        slotMask = built.slotMask
        maxWait = built.maxWait
    }

    deinit {
        for block in memory { block.deallocate() }
    }

    public var count: Int { entryCount }
    /// The largest wait in the map, in nanoseconds.
    public var largestWaitNanos: UInt64 { maxWait }

    /// The entry index for `(device, command)`, or -1 when the map has no such key.
    @inlinable
    public func lookup(device: DeviceAddress, command: UnsafeRawBufferPointer) -> Int {
        let n = command.count
        guard n > 0 && n <= ItemSyntax.maxCommandLength, let p = command.baseAddress else { return -1 }
        let h = DeviceMap.hash(high: device.high, low: device.low, command: p, count: n)
        let tag = h >> 32
        var i = Int(truncatingIfNeeded: h) & slotMask
        while true {
            let s = slots[i]
            if s == 0 { return -1 }
            if s >> 32 == tag {
                let e = Int(truncatingIfNeeded: s & 0xFFFF_FFFF) &- 1
                let entry = entries + e
                if entry.pointee.low == device.low && entry.pointee.high == device.high
                    && Int(entry.pointee.commandLength) == n
                    && memcmp(commandArena + Int(entry.pointee.commandOffset), p, n) == 0
                {
                    return e
                }
            }
            i = (i &+ 1) & slotMask
        }
    }

    public func lookup(device: DeviceAddress, command: String) -> Int {
        var s = command
        return s.withUTF8 { lookup(device: device, command: UnsafeRawBufferPointer($0)) }
    }

    @inlinable public func response(at index: Int) -> Int64 {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        return entries[index].response
    }

    @inlinable public func waitNanos(at index: Int) -> UInt64 {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        return entries[index].wait
    }

    /// Appends the entry's response in decimal (pre-rendered at load time).
    @inlinable public func appendResponse(at index: Int, to buffer: ByteBuffer) {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        let e = entries + index
        buffer.append(UnsafeRawBufferPointer(start: responseArena + Int(e.pointee.responseOffset),
                                             count: Int(e.pointee.responseLength)))
    }

    /// The entry's device (diagnostics, tests).
    public func device(at index: Int) -> DeviceAddress {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        return DeviceAddress(high: entries[index].high, low: entries[index].low)
    }

    /// The entry's command (diagnostics, tests).
    public func command(at index: Int) -> String {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        let e = entries[index]
        return String(decoding: UnsafeBufferPointer(start: commandArena + Int(e.commandOffset), count: Int(e.commandLength)),
                      as: UTF8.self)
    }

    /// The 1-based line of the map file that defined the entry.
    public func line(at index: Int) -> Int {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        return Int(entries[index].line)
    }

    /// A 64-bit hash of a key: a multiply-xorshift over the address and the command in 8-byte words, then
    /// murmur3's finaliser so that both the low bits (slot) and the high bits (tag) are well mixed.
    @inlinable @inline(__always)
    static func hash(high: UInt64, low: UInt64, command p: UnsafeRawPointer, count n: Int) -> UInt64 {
        var h = (high ^ 0x243F_6A88_85A3_08D3) &* 0x9E37_79B9_7F4A_7C15
        h = (h ^ (h >> 29) ^ low) &* 0xBF58_476D_1CE4_E5B9
        h ^= UInt64(truncatingIfNeeded: n)
        var i = 0
        while i &+ 8 <= n {
            h = (h ^ p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x94D0_49BB_1331_11EB
            h ^= h >> 31
            i &+= 8
        }
        if i < n {
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                tail |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << shift
                shift &+= 8
                i &+= 1
            }
            h = (h ^ tail) &* 0x94D0_49BB_1331_11EB
            h ^= h >> 31
        }
        h ^= h >> 33
        h &*= 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h &*= 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return h
    }
}

public enum WaitParser {
    public enum Failure: Error, Equatable, Sendable {
        /// Not `digits` or `digits.digits`.
        case invalid
        /// More than 9 decimals: finer than a nanosecond.
        case tooPrecise
        /// Above `DeviceMap.maxWaitNanos`.
        case tooLarge
    }

    /// Seconds as an integer or decimal (`1`, `0.25`, `1.5`, at most 9 decimals) to nanoseconds; nil if invalid
    /// or above `DeviceMap.maxWaitNanos`.
    public static func parseNanos(_ text: UnsafeRawBufferPointer) -> UInt64? {
        if case .success(let v) = parse(text) { return v }
        return nil
    }

    public static func parseNanos(_ text: String) -> UInt64? {
        var s = text
        return s.withUTF8 { parseNanos(UnsafeRawBufferPointer($0)) }
    }

    /// Like `parseNanos`, saying why a wait is rejected. Exact decimal arithmetic: no floating point.
    public static func parse(_ text: UnsafeRawBufferPointer) -> Result<UInt64, Failure> {
        let n = text.count
        var i = 0
        var seconds: UInt64 = 0
        var tooLarge = false
        while i < n, text[i] &- 0x30 < 10 {
            seconds = seconds * 10 + UInt64(text[i] &- 0x30)
            if seconds > 86_400 { tooLarge = true; seconds = 86_401 }  // saturate: no overflow on long inputs
            i += 1
        }
        guard i > 0 else { return .failure(.invalid) }
        var fraction: UInt64 = 0
        var decimals = 0
        if i < n && text[i] == UInt8(ascii: ".") {
            i += 1
            while i < n, text[i] &- 0x30 < 10 {
                if decimals < 9 { fraction = fraction * 10 + UInt64(text[i] &- 0x30) }
                decimals += 1
                i += 1
            }
            guard decimals > 0 else { return .failure(.invalid) }
        }
        guard i == n else { return .failure(.invalid) }
        guard decimals <= 9 else { return .failure(.tooPrecise) }
        guard !tooLarge else { return .failure(.tooLarge) }
        var scale = decimals
        while scale < 9 { fraction *= 10; scale += 1 }
        let nanos = seconds * 1_000_000_000 + fraction
        guard nanos <= DeviceMap.maxWaitNanos else { return .failure(.tooLarge) }
        return .success(nanos)
    }
}

/// Signed 64-bit decimal with an optional sign, as the map's response field.
enum ResponseParser {
    enum Failure: Error { case invalid, outOfRange }

    static func parse(_ text: UnsafeRawBufferPointer) -> Result<Int64, Failure> {
        let n = text.count
        var i = 0
        var negative = false
        if n > 0 && (text[0] == UInt8(ascii: "-") || text[0] == UInt8(ascii: "+")) {
            negative = text[0] == UInt8(ascii: "-")
            i = 1
        }
        guard i < n else { return .failure(.invalid) }
        if n - i <= 18 {
            // Up to 18 digits cannot overflow: the common case needs no overflow checks.
            var value: Int64 = 0
            while i < n {
                let d = text[i] &- 0x30
                guard d < 10 else { return .failure(.invalid) }
                value = value &* 10 &+ Int64(d)
                i += 1
            }
            return .success(negative ? -value : value)
        }
        let limit: UInt64 = negative ? UInt64(Int64.max) + 1 : UInt64(Int64.max)
        var magnitude: UInt64 = 0
        var overflow = false
        while i < n {
            let d = text[i] &- 0x30
            guard d < 10 else { return .failure(.invalid) }
            if !overflow {
                let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(UInt64(d))
                if o1 || o2 || s > limit { overflow = true } else { magnitude = s }
            }
            i += 1
        }
        if overflow { return .failure(.outOfRange) }
        if negative { return .success(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)) }
        return .success(Int64(magnitude))
    }
}
