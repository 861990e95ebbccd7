#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The device map: `(device, command) -> (response, wait)`, loaded once and shared read-only by all reactors.
/// Lookups are O(1) and allocate nothing: they read the command's bytes straight from the request buffer.
///
/// Layout (no per-entry Swift objects, so a million entries cost a few plain allocations and no ARC traffic):
/// - `commands`: the distinct commands, each numbered at load time (`CommandInterner`, a few cached lines);
/// - `slots`: an open-addressing table (linear probing, at most half full) of 32-byte `Slot`s holding the whole
///   key inline, `(address, command number)`, with the response and the wait packed beside it. A lookup resolves
///   the command in the small table, then reads one slot of the big one: one cache miss, no pointer chasing, no
///   memcmp. (Looking keys up was two thirds of the server's CPU when a lookup chased a slot, an entry and the
///   command's bytes.) The table is built from a trusted file and only read afterwards, so peers cannot grow
///   probe chains.
/// - `entries`: one record per map line, in file order, for the accessors by index (cold: diagnostics, tests,
///   and the rare entry whose response or wait does not fit its slot).
public final class DeviceMap: @unchecked Sendable {  // immutable after init
    /// The largest wait a map may give (one day): a longer one is surely a typo and would pin memory.
    public static let maxWaitNanos: UInt64 = 86_400 * 1_000_000_000

    struct Entry {
        var high: UInt64
        var low: UInt64
        var response: Int64
        var wait: UInt64
        /// What the entry's slot carries (`Slot.packed`).
        var packed: UInt64
        var line: UInt32
        var command: UInt32
    }

    /// One hash slot: 32 bytes, two to a cache line.
    struct Slot {
        var high: UInt64
        var low: UInt64
        /// The command's number + 1; 0 marks an empty slot.
        var command: UInt32
        var entry: UInt32
        /// `wait number << 48 | response as 48-bit two's complement`, so that answering needs nothing but the
        /// slot; `Slot.unpacked` when either does not fit (then the entry has them).
        var packed: UInt64

        static let unpacked = UInt64.max

        static func pack(response: Int64, waitNumber: UInt16?) -> UInt64 {
            guard let w = waitNumber, w != 0xFFFF, response >= -(1 << 47) && response < 1 << 47 else { return unpacked }
            return UInt64(w) << 48 | (UInt64(bitPattern: response) & 0xFFFF_FFFF_FFFF)
        }
    }

    let entries: UnsafeMutablePointer<Entry>
    let entryCount: Int
    let commands: CommandInterner
    let slots: UnsafeMutablePointer<Slot>
    let slotMask: Int
    /// The waits slots refer to by number.
    let waits: UnsafeMutablePointer<UInt64>
    let maxWait: UInt64
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
        commands = built.commands
        slots = built.slots
        slotMask = built.slotMask
        maxWait = built.maxWait
        waits = .allocate(capacity: max(built.waits.count, 1))
        waits.initialize(from: built.waits, count: built.waits.count)
    }

    deinit {
        for block in memory { block.deallocate() }
        commands.deallocate()
        waits.deallocate()
    }

    public var count: Int { entryCount }
    /// The largest wait in the map, in nanoseconds.
    public var largestWaitNanos: UInt64 { maxWait }

    /// The entry index for `(device, command)`, or -1 when the map has no such key.
    public func lookup(device: DeviceAddress, command: UnsafeRawBufferPointer) -> Int {
        let n = command.count
        guard n > 0 && n <= ItemSyntax.maxCommandLength, let p = command.baseAddress else { return -1 }
        let id = commands.find(p, n)
        guard id >= 0 else { return -1 }
        let key = DeviceMap.hash(high: device.high, low: device.low, command: UInt32(id + 1))
        guard let slot = find(high: device.high, low: device.low, command: UInt32(id + 1), hash: key) else { return -1 }
        return Int(slot.pointee.entry)
    }

    public func lookup(device: DeviceAddress, command: String) -> Int {
        var s = command
        return s.withUTF8 { lookup(device: device, command: UnsafeRawBufferPointer($0)) }
    }

    /// The number of a command the map knows, + 1 (the form slots store), or 0 when no entry has that command.
    /// `n` must be 1...ItemSyntax.maxCommandLength.
    @inline(__always) func commandKey(_ p: UnsafeRawPointer, _ n: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: commands.find(p, n) &+ 1)
    }

    /// The slot of a key, if the map has it. `hash` is `DeviceMap.hash` of the key.
    @inline(__always)
    func find(high: UInt64, low: UInt64, command: UInt32, hash: UInt64) -> UnsafeMutablePointer<Slot>? {
        var i = Int(truncatingIfNeeded: hash) & slotMask
        while true {
            let slot = slots + i
            if slot.pointee.low == low && slot.pointee.high == high && slot.pointee.command == command { return slot }
            if slot.pointee.command == 0 { return nil }
            i = (i &+ 1) & slotMask
        }
    }

    /// Appends the response of a found slot in decimal and returns its wait.
    @inline(__always)
    func answer(_ slot: UnsafeMutablePointer<Slot>, to buffer: ByteBuffer) -> UInt64 {
        let packed = slot.pointee.packed
        if packed != Slot.unpacked {
            buffer.appendDecimal(Int64(bitPattern: packed << 16) >> 16)
            return waits[Int(truncatingIfNeeded: packed >> 48)]
        }
        let e = entries + Int(slot.pointee.entry)
        buffer.appendDecimal(e.pointee.response)
        return e.pointee.wait
    }

    public func response(at index: Int) -> Int64 {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        return entries[index].response
    }

    public func waitNanos(at index: Int) -> UInt64 {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        return entries[index].wait
    }

    /// Appends the entry's response in canonical decimal.
    public func appendResponse(at index: Int, to buffer: ByteBuffer) {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        buffer.appendDecimal(entries[index].response)
    }

    /// The entry's device (diagnostics, tests).
    public func device(at index: Int) -> DeviceAddress {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        return DeviceAddress(high: entries[index].high, low: entries[index].low)
    }

    /// The entry's command (diagnostics, tests).
    public func command(at index: Int) -> String {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        return commands.string(of: Int(entries[index].command))
    }

    /// The 1-based line of the map file that defined the entry.
    public func line(at index: Int) -> Int {
        precondition(index >= 0 && index < entryCount, "DeviceMap index out of range")
        return Int(entries[index].line)
    }

    /// A 64-bit hash of a key (address, command number + 1), murmur3's finaliser last so that the low bits (the
    /// slot) depend on every input bit.
    @inline(__always)
    static func hash(high: UInt64, low: UInt64, command: UInt32) -> UInt64 {
        let h = (high &* 0x9E37_79B9_7F4A_7C15) ^ low ^ (UInt64(command) &* 0xC2B2_AE3D_27D4_EB4F)
        return CommandInterner.fmix(h)
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
