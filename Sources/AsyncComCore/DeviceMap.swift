import Glibc

/// The device map: `(device, command) -> (response, wait)`, loaded once and shared read-only by all reactors.
/// Lookups are O(1) and allocate nothing: they read the command's bytes straight from the request buffer.
///
/// Layout (no per-entry Swift objects and nothing per entry beside its hash slot: 20 bytes an IPv4 entry):
/// - `commands`: the distinct commands, each numbered at load time (`CommandInterner`, a few cached lines);
/// - two open-addressing tables of slots that hold the whole key inline with the response and the wait packed
///   beside it: 16-byte `Slot4`s for IPv4 devices (address and command number in one word), 32-byte `Slot6`s for
///   the others. A slot is found by its hash's bucket: one 64-byte cache line (4 `Slot4`s or 2 `Slot6`s), probed
///   bucket by bucket when full. The tables are 80% full, so most keys sit in their own bucket: a lookup resolves
///   the command in the small table, then reads one cache line of the big one, no pointer chasing, no memcmp.
///   (Looking keys up was two thirds of the server's CPU when a lookup chased a slot, an entry and the command's
///   bytes.) The tables are built from a trusted file and only read afterwards, so peers cannot grow probe chains;
///   a lookup gives up after the longest chain the build made (`Table.maxDisplacement`).
/// - `unpacked`: response and wait of the rare entry whose response does not fit 48 bits or whose wait is
///   beyond the 65,535 that slots can number, which its slot refers to by index.
/// What used to sit beside the slots (a 48-byte record per entry, kept for diagnostics) is gone: the line that
/// defined an entry is needed only to report a duplicate, and that rare path reads the file again.
///
/// An entry's index (`lookup`, the accessors) is its slot's position: stable for the map's life, not file order.
public final class DeviceMap: @unchecked Sendable {  // immutable after init
    /// The largest wait a map may give (one day): a longer one is surely a typo and would pin memory.
    public static let maxWaitNanos: UInt64 = 86_400 * 1_000_000_000

    /// An IPv4 entry: 16 bytes, four to a cache line.
    struct Slot4 {
        /// `IPv4 address << 32 | command number + 1`; 0 marks an empty slot.
        var key: UInt64
        var value: UInt64
    }

    /// An entry for an IPv6 device: 32 bytes, two to a cache line.
    struct Slot6 {
        var high: UInt64
        var low: UInt64
        /// The command's number + 1; 0 marks an empty slot.
        var command: UInt64
        var value: UInt64
    }

    /// What a slot answers: `wait number << 48 | response as 48-bit two's complement`, or, when either does not
    /// fit, `Value.unpacked << 48 | index into unpacked`.
    enum Value {
        static let unpacked: UInt64 = 0xFFFF

        @inline(__always) static func pack(response: Int64, waitNumber: UInt16?) -> UInt64? {
            guard let w = waitNumber, UInt64(w) != unpacked, response >= -(1 << 47) && response < 1 << 47 else { return nil }
            return UInt64(w) << 48 | (UInt64(bitPattern: response) & 0xFFFF_FFFF_FFFF)
        }
    }

    struct Unpacked {
        var response: Int64
        var wait: UInt64
    }

    /// One hash table: `buckets` cache lines of slots, a key's probe starting at its hash's bucket.
    struct Table {
        let slots: UnsafeMutableRawPointer
        let buckets: Int
        /// The most buckets any key of the table sits past its own: lookups stop there.
        let maxDisplacement: Int

        /// The bucket of a hash: the high half of `hash * buckets` (any table size, no modulo).
        @inline(__always) static func bucket(_ hash: UInt64, _ buckets: Int) -> Int {
            Int(truncatingIfNeeded: hash.multipliedFullWidth(by: UInt64(truncatingIfNeeded: buckets)).high)
        }
    }

    static let slotsPerBucket4 = 4
    static let slotsPerBucket6 = 2
    /// Entries per slot of the tables: higher saves memory, lower makes chains shorter. At 0.8 a 10M-entry IPv4
    /// map is 20 B/entry and most keys are found in their own bucket (see docs/ARCHITECTURE.md, device map).
    static let loadFactor = 0.8

    let table4: Table
    let table6: Table
    let entryCount: Int
    let commands: CommandInterner
    /// The waits slots refer to by number.
    let waits: UnsafeMutablePointer<UInt64>
    let unpacked: UnsafeMutablePointer<Unpacked>
    let maxWait: UInt64
    let memory: [LargeMemory]

    /// Loads `ip:command:response:wait` lines. Throws on the first bad line, a duplicate key, or a file that
    /// cannot be read (missing, a directory, not text). The file is read in blocks, never whole: loading needs
    /// the tables, the parsed entries once, and a block (`MapLoader`). Safe to call from any thread.
    public convenience init(contentsOfFile path: String) throws(InputFileError) {
        let built = try MapLoader.load(path: path)
        self.init(built)
    }

    public convenience init(parsing data: UnsafeRawBufferPointer, fileName: String) throws(InputFileError) {
        let built = try MapLoader.load(data: data, fileName: fileName)
        self.init(built)
    }

    init(_ built: MapLoader.Built) {
        memory = built.memory
        table4 = built.table4
        table6 = built.table6
        entryCount = built.count
        commands = built.commands
        maxWait = built.maxWait
        waits = .allocate(capacity: max(built.waits.count, 1))
        waits.initialize(from: built.waits, count: built.waits.count)
        unpacked = .allocate(capacity: max(built.unpacked.count, 1))
        unpacked.initialize(from: built.unpacked, count: built.unpacked.count)
    }

    deinit {
        for block in memory { block.deallocate() }
        commands.deallocate()
        waits.deallocate()
        unpacked.deallocate()
    }

    public var count: Int { entryCount }
    /// The largest wait in the map, in nanoseconds.
    public var largestWaitNanos: UInt64 { maxWait }

    /// The entry index for `(device, command)`, or -1 when the map has no such key.
    public func lookup(device: DeviceAddress, command: UnsafeRawBufferPointer) -> Int {
        let n = command.count
        guard n > 0 && n <= ItemSyntax.maxCommandLength, let p = command.baseAddress else { return -1 }
        let id = commandKey(p, n)
        guard id != 0 else { return -1 }
        let key = DeviceMap.hash(high: device.high, low: device.low, command: id)
        guard let value = find(high: device.high, low: device.low, command: id, hash: key) else { return -1 }
        return index(of: value)
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

    /// `commandKey` for a command with `before` readable bytes before it (the rest of its item).
    @inline(__always) func commandKey(_ p: UnsafeRawPointer, _ n: Int, readableBefore before: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: commands.find(p, n, readableBefore: before) &+ 1)
    }

    /// The value word of a key's slot, if the map has it. `hash` is `DeviceMap.hash` of the key.
    @inline(__always)
    func find(high: UInt64, low: UInt64, command: UInt32, hash: UInt64) -> UnsafePointer<UInt64>? {
        if high == 0 && low >> 32 == 0x0000_FFFF {
            let key = low << 32 | UInt64(command)
            let t = table4
            let slots = t.slots.assumingMemoryBound(to: Slot4.self)
            var b = Table.bucket(hash, t.buckets)
            var left = t.maxDisplacement
            while true {
                let line = slots + b &* DeviceMap.slotsPerBucket4
                for k in 0..<DeviceMap.slotsPerBucket4 {
                    let s = line + k
                    if s.pointee.key == key { return UnsafeRawPointer(s).advanced(by: 8).assumingMemoryBound(to: UInt64.self) }
                    if s.pointee.key == 0 { return nil }
                }
                if left == 0 { return nil }
                left &-= 1
                b &+= 1
                if b == t.buckets { b = 0 }
            }
        }
        let t = table6
        let slots = t.slots.assumingMemoryBound(to: Slot6.self)
        var b = Table.bucket(hash, t.buckets)
        var left = t.maxDisplacement
        let c = UInt64(command)
        while true {
            let line = slots + b &* DeviceMap.slotsPerBucket6
            for k in 0..<DeviceMap.slotsPerBucket6 {
                let s = line + k
                if s.pointee.low == low && s.pointee.high == high && s.pointee.command == c {
                    return UnsafeRawPointer(s).advanced(by: 24).assumingMemoryBound(to: UInt64.self)
                }
                if s.pointee.command == 0 { return nil }
            }
            if left == 0 { return nil }
            left &-= 1
            b &+= 1
            if b == t.buckets { b = 0 }
        }
    }

    /// Starts loading the bucket where `find` will begin for this key (a prefetch hint: no effect on results).
    /// `hash` is `DeviceMap.hash` of the key.
    @inline(__always)
    func prefetch(high: UInt64, low: UInt64, hash: UInt64) {
        let t = high == 0 && low >> 32 == 0x0000_FFFF ? table4 : table6
        Prefetch.forRead(t.slots + Table.bucket(hash, t.buckets) &* 64)
    }

    /// Appends the response of a found slot (its value word, from `find`) in decimal and returns its wait.
    @inline(__always)
    func answer(_ value: UnsafePointer<UInt64>, to buffer: ByteBuffer) -> UInt64 {
        let v = value.pointee
        let w = v >> 48
        if w != Value.unpacked {
            buffer.appendDecimal(Int64(bitPattern: v << 16) >> 16)
            return waits[Int(truncatingIfNeeded: w)]
        }
        let u = unpacked + Int(truncatingIfNeeded: v & 0xFFFF_FFFF_FFFF)
        buffer.appendDecimal(u.pointee.response)
        return u.pointee.wait
    }

    // MARK: Entries by index (diagnostics, tests)

    var capacity4: Int { table4.buckets * DeviceMap.slotsPerBucket4 }
    var capacity6: Int { table6.buckets * DeviceMap.slotsPerBucket6 }

    /// The index of the slot whose value word `find` returned.
    func index(of value: UnsafePointer<UInt64>) -> Int {
        let offset = UnsafeRawPointer(value) - UnsafeRawPointer(table4.slots)
        if offset >= 0 && offset < capacity4 * MemoryLayout<Slot4>.stride { return offset / MemoryLayout<Slot4>.stride }
        return capacity4 + (UnsafeRawPointer(value) - UnsafeRawPointer(table6.slots)) / MemoryLayout<Slot6>.stride
    }

    /// Key and value of the entry at `index`: (device, command number + 1, value), command 0 for an empty slot.
    private func slot(_ index: Int) -> (device: DeviceAddress, command: UInt64, value: UInt64) {
        precondition(index >= 0 && index < capacity4 + capacity6, "DeviceMap index out of range")
        if index < capacity4 {
            let s = table4.slots.assumingMemoryBound(to: Slot4.self)[index]
            return (DeviceAddress(ipv4: UInt32(truncatingIfNeeded: s.key >> 32)), s.key & 0xFFFF_FFFF, s.value)
        }
        let s = table6.slots.assumingMemoryBound(to: Slot6.self)[index - capacity4]
        return (DeviceAddress(high: s.high, low: s.low), s.command, s.value)
    }

    private func entry(_ index: Int) -> (device: DeviceAddress, command: Int, response: Int64, wait: UInt64) {
        let s = slot(index)
        precondition(s.command != 0, "DeviceMap index \(index) is not an entry")
        let w = s.value >> 48
        if w != Value.unpacked {
            return (s.device, Int(s.command) - 1, Int64(bitPattern: s.value << 16) >> 16, waits[Int(w)])
        }
        let u = unpacked[Int(s.value & 0xFFFF_FFFF_FFFF)]
        return (s.device, Int(s.command) - 1, u.response, u.wait)
    }

    /// Calls `body` with the index of every entry (in no particular order).
    public func forEachEntry(_ body: (Int) throws -> Void) rethrows {
        for i in 0..<(capacity4 + capacity6) where slot(i).command != 0 { try body(i) }
    }

    public func response(at index: Int) -> Int64 { entry(index).response }

    public func waitNanos(at index: Int) -> UInt64 { entry(index).wait }

    /// Appends the entry's response in canonical decimal.
    public func appendResponse(at index: Int, to buffer: ByteBuffer) {
        buffer.appendDecimal(entry(index).response)
    }

    public func device(at index: Int) -> DeviceAddress { entry(index).device }

    public func command(at index: Int) -> String { commands.string(of: entry(index).command) }

    /// Resident bytes of the map's tables and side arrays (the bench's bytes per entry, without the process).
    public var tableBytes: Int {
        capacity4 * MemoryLayout<Slot4>.stride + capacity6 * MemoryLayout<Slot6>.stride
    }

    /// A 64-bit hash of a key (address, command number + 1), murmur3's finaliser last so that every bit (the
    /// high ones pick the bucket) depends on every input bit.
    @inline(__always)
    static func hash(high: UInt64, low: UInt64, command: UInt32) -> UInt64 {
        let h = (high &* 0x9E37_79B9_7F4A_7C15) ^ low ^ (UInt64(command) &* 0xC2B2_AE3D_27D4_EB4F)
        return CommandInterner.fmix(h)
    }
}
