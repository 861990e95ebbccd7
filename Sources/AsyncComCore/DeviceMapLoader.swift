import Glibc

/// Parses a map file into the hash tables `DeviceMap` keeps. Loading allocates nothing per line.
///
/// The file is read in blocks of whole lines (`BlockReader`), never whole: a 10M-entry map is ~220 MB of text
/// and mapping or reading all of it would put the whole file in the process beside its tables. It is read
/// twice. The first pass only counts each table's entries (`count(block:)`: line ends and colons, no field
/// parsing), so that each table is allocated once at its final size and faulted in at once (`LargeMemory`). The second pass parses each entry and inserts it straight into its
/// table, in batches: the batch's buckets are loaded first, so that their cache misses overlap instead of
/// coming one per key. Peak: the tables plus one block.
///
/// Why not parse once into a staging array and build the tables from it (as before): the staging array was
/// fresh memory too (16 B per IPv4 entry beside the table's 20), and on this machine (a Firecracker VM with
/// free page reporting) touching fresh memory is most of a big load: a 10M-entry load spent 2.2-4.5 s of
/// system time zeroing the 360 MB of table and staging (measured: 360 MiB of fresh huge pages took 0.07 to 6 s
/// to touch, depending on whether the host still backed them), beside 2.4 s of user time of which the
/// staging's partition and insert passes were 1.4 s. Counting first costs a second read of the file from the
/// page cache instead.
///
/// Nothing records which line defined an entry: a duplicate key is found while inserting (the first line
/// whose key an earlier line had), and then `reportDuplicate` reads the input again to name the earlier line
/// (the rare path pays, not every load).
struct MapLoader {
    typealias Slot4 = DeviceMap.Slot4
    typealias Slot6 = DeviceMap.Slot6

    struct Built {
        var memory: [LargeMemory]
        var table4: DeviceMap.Table
        var table6: DeviceMap.Table
        var count: Int
        var commands: CommandInterner
        var waits: [UInt64]
        var unpacked: [DeviceMap.Unpacked]
        var maxWait: UInt64
    }

    enum Mode {
        /// Count the entries of each table (`count(block:)`).
        case count
        /// Parse every entry and insert it into its table.
        case build
        /// Stop at the first line with the key of `slot`.
        case findFirst(slot: Int)
    }

    let fileName: String
    var mode = Mode.count
    var lineNumber = 0
    /// The line a rescan stopped at (`findFirst`).
    var foundLine: Int?

    var commands = CommandInterner()
    var waits = WaitInterner()
    var unpacked: [DeviceMap.Unpacked] = []
    var maxWait: UInt64 = 0
    /// Entries per table as counted by the first pass.
    var counted4 = 0
    var counted6 = 0
    var table4: TableBuilder<Slot4>?
    var table6: TableBuilder<Slot6>?
    /// The first key already in a table when its line came: that line and the key's slot.
    var duplicate: (line: Int, slot: Int)?
    /// The map of a duplicate's rescan (it looks keys up in it).
    var map: DeviceMap?

    init(fileName: String) {
        self.fileName = fileName
    }

    // MARK: Entry points

    static func load(path: String) throws(InputFileError) -> Built {
        let fd = try FileInput.openFile(path, name: path)
        defer { close(fd) }
        var st = stat()
        _ = fstat(fd, &st)
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            // A pipe or a pseudo-file: its size is unknown until read, so read it whole (rare, and small).
            let contents = try FileInput.readAll(path)
            return try load(data: contents.bytes, fileName: path)
        }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        var loader = MapLoader(fileName: path)
        return try loader.run { loader throws(InputFileError) in
            guard lseek(fd, 0, SEEK_SET) == 0 else {
                throw InputFileError(file: path, line: nil, message: FileInput.describe(errno: errno))
            }
            try BlockReader.forEachBlock(fd: fd, name: path) { block throws(InputFileError) in
                try loader.parse(block: block)
            }
        }
    }

    static func load(data: UnsafeRawBufferPointer, fileName: String) throws(InputFileError) -> Built {
        var loader = MapLoader(fileName: fileName)
        return try loader.run { loader throws(InputFileError) in _ = try loader.parse(block: data) }
    }

    /// Counts the input's entries, allocates the tables, parses the input again into them, and on a duplicate
    /// key reads the input once more to report it. `readInput` feeds the input to `parse(block:)`, from the
    /// start each time it is called.
    mutating func run(_ readInput: (inout MapLoader) throws(InputFileError) -> Void) throws(InputFileError) -> Built {
        mode = .count
        try readInput(&self)
        table4 = TableBuilder(entries: counted4)
        table6 = TableBuilder(entries: counted6)
        mode = .build
        lineNumber = 0
        // The first error in file order wins: a bad line, or a key an earlier line had (found when the batch
        // holding it is inserted, which happens before a bad line is reported).
        var lineError: InputFileError?
        do {
            try readInput(&self)
        } catch {
            lineError = error
        }
        if duplicate == nil && lineError == nil { flush() }
        let built = finish()
        if let duplicate {
            // The map owns the tables from here, and frees them.
            try reportDuplicate(duplicate, map: DeviceMap(built), readInput)
        }
        if let lineError {
            MapLoader.free(built)
            throw lineError
        }
        if built.count == 0 {
            MapLoader.free(built)
            throw InputFileError(file: fileName, line: nil,
                                 message: "no entries: expected lines of ip:command:response:wait (blank and # lines are skipped)")
        }
        return built
    }

    static func free(_ built: Built) {
        for block in built.memory { block.deallocate() }
        built.commands.deallocate()
    }

    // MARK: Parsing

    /// Parses whole lines (the last may lack its newline only at the end of the input), numbering them on from
    /// the previous block. False once the rest of the input is not needed (an error or a rescan's line found).
    mutating func parse(block: UnsafeRawBufferPointer) throws(InputFileError) -> Bool {
        guard let base = block.baseAddress?.assumingMemoryBound(to: UInt8.self), block.count > 0 else { return true }
        if case .count = mode {
            count(block: block)
            return true
        }
        let size = block.count
        var nul = Int.max
        if let hit = memchr(base, 0, size) { nul = UnsafeRawPointer(hit) - UnsafeRawPointer(base) }
        var lines = LineFramer.Lines(block)
        while let line = lines.next() {
            if foundLine != nil || duplicate != nil { return false }
            lineNumber += 1
            if nul < lines.offset {
                try fail(InputFileError(file: fileName, line: lineNumber, message: "contains a NUL byte: not a text file"))
                return false
            }
            let content = LineFramer.trimmed(line)
            if content.isEmpty || content[0] == UInt8(ascii: "#") { continue }
            let s = UnsafeRawPointer(content.baseAddress!) - UnsafeRawPointer(base)
            try parseLine(base, start: s, end: s + content.count)
        }
        return foundLine == nil && duplicate == nil
    }

    /// The first pass: how many entries each table will hold. Counts lines that have three colons after the
    /// device; a device without a colon of its own is IPv4 (or a bad line, which the second pass reports), one
    /// with colons is parsed to tell an IPv4-mapped address from IPv6. Lines that are not entries may be
    /// counted: a table is then a little larger than it needs to be, and the second pass stops at them anyway.
    mutating func count(block: UnsafeRawBufferPointer) {
        var n4 = 0
        var lines = LineFramer.Lines(block)
        while let line = lines.next() {
            let content = LineFramer.trimmed(line)
            guard let p = content.baseAddress, !content.isEmpty, content[0] != UInt8(ascii: "#") else { continue }
            let base = p.assumingMemoryBound(to: UInt8.self)
            let e = content.count
            let c3 = MapLoader.lastColon(base, from: 0, before: e)
            let c2 = c3 > 0 ? MapLoader.lastColon(base, from: 0, before: c3) : -1
            let c1 = c2 > 0 ? MapLoader.lastColon(base, from: 0, before: c2) : -1
            guard c1 >= 0 else { continue }
            if memchr(base, Int32(UInt8(ascii: ":")), c1) == nil {
                n4 += 1
            } else if let device = DeviceAddress.parse(UnsafeRawBufferPointer(start: base, count: c1)) {
                if device.isIPv4 { n4 += 1 } else { counted6 += 1 }
            }
        }
        counted4 += n4
    }

    @inline(__always) static func lastColon(_ base: UnsafePointer<UInt8>, from s: Int, before e: Int) -> Int {
        var i = e - 1
        while i >= s && base[i] != UInt8(ascii: ":") { i -= 1 }
        return i
    }

    /// Reports a bad line: the entries before it are inserted first, and a duplicate among them, being earlier
    /// in the file, is reported instead.
    mutating func fail(_ error: InputFileError) throws(InputFileError) {
        if case .build = mode, duplicate == nil { flush() }
        if duplicate == nil { throw error }
    }

    mutating func parseLine(_ base: UnsafePointer<UInt8>, start s: Int, end e: Int) throws(InputFileError) {
        func bytes(_ s: Int, _ e: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base + s, count: e - s) }
        let number = lineNumber
        func error(_ message: String) -> InputFileError {
            InputFileError(file: fileName, line: number, message: message)
        }
        // Fields from the right: the device may be IPv6 and hold colons of its own.
        let c3 = MapLoader.lastColon(base, from: s, before: e)
        let c2 = c3 > s ? MapLoader.lastColon(base, from: s, before: c3) : s - 1
        let c1 = c2 > s ? MapLoader.lastColon(base, from: s, before: c2) : s - 1
        guard c1 >= s else {
            let fields = c3 < s ? 1 : (c2 < s ? 2 : 3)
            return try fail(error("expected ip:command:response:wait, found \(fields) field\(fields == 1 ? "" : "s") in '\(Wire.printable(bytes(s, e), limit: Wire.fileQuoteLimit))'"))
        }
        let deviceText = bytes(s, c1)
        let commandText = bytes(c1 + 1, c2)
        let responseText = bytes(c2 + 1, c3)
        let waitText = bytes(c3 + 1, e)

        guard let device = DeviceAddress.parse(deviceText) else {
            return try fail(error("invalid device address '\(Wire.printable(deviceText, limit: Wire.fileQuoteLimit))': expected an IPv4 address such as 10.0.0.1 or an IPv6 address such as 2001:db8::1"))
        }
        guard ItemSyntax.isValidCommand(commandText) else {
            return try fail(error("invalid command '\(Wire.printable(commandText, limit: Wire.fileQuoteLimit))': \(ItemSyntax.ItemError.badCommand)"))
        }
        let response: Int64
        switch ResponseParser.parse(responseText) {
        case .success(let v): response = v
        case .failure(.invalid):
            return try fail(error("invalid response '\(Wire.printable(responseText, limit: Wire.fileQuoteLimit))': expected a whole number such as 1 or -5"))
        case .failure(.outOfRange):
            return try fail(error("invalid response '\(Wire.printable(responseText, limit: Wire.fileQuoteLimit))': outside the signed 64-bit range -9223372036854775808 to 9223372036854775807"))
        }
        let wait: UInt64
        switch WaitParser.parse(waitText) {
        case .success(let v): wait = v
        case .failure(.invalid):
            return try fail(error("invalid wait '\(Wire.printable(waitText, limit: Wire.fileQuoteLimit))': expected seconds >= 0 such as 1 or 0.25"))
        case .failure(.tooPrecise):
            return try fail(error("invalid wait '\(Wire.printable(waitText, limit: Wire.fileQuoteLimit))': at most 9 decimals (nanoseconds)"))
        case .failure(.tooLarge):
            return try fail(error("invalid wait '\(Wire.printable(waitText, limit: Wire.fileQuoteLimit))': at most 86400 seconds (one day)"))
        }

        switch mode {
        case .count:
            break
        case .build:
            let command = commands.intern(UnsafeRawPointer(base + c1 + 1), c2 - c1 - 1) + 1
            var value: UInt64
            if let packed = DeviceMap.Value.pack(response: response, waitNumber: waits.intern(wait)) {
                value = packed
            } else {
                value = DeviceMap.Value.unpacked << 48 | UInt64(unpacked.count)
                unpacked.append(DeviceMap.Unpacked(response: response, wait: wait))
            }
            if wait > maxWait { maxWait = wait }
            // A line the first pass did not count: the file grew between the passes.
            if device.isIPv4 {
                guard table4!.count + table4!.pendingCount < counted4 else { return try fail(changed(number)) }
                if let found = table4!.add(Slot4(key: device.low << 32 | UInt64(command), value: value), line: number) {
                    duplicate = found
                    flush()
                }
            } else {
                guard table6!.count + table6!.pendingCount < counted6 else { return try fail(changed(number)) }
                let entry = Slot6(high: device.high, low: device.low, command: UInt64(command), value: value)
                if let found = table6!.add(entry, line: number) {
                    duplicate = (found.line, map4Capacity + found.slot)
                    flush()
                }
            }
        case .findFirst(let slot):
            if map!.lookup(device: device, command: bytes(c1 + 1, c2)) == slot { foundLine = number }
        }
    }

    func changed(_ line: Int) -> InputFileError {
        InputFileError(file: fileName, line: line, message: "more entries than when the file was first read: the file changed while it was loaded")
    }

    // MARK: Tables

    /// Where the IPv6 table's indices start (`DeviceMap.index(of:)`).
    var map4Capacity: Int { table4!.buckets * DeviceMap.slotsPerBucket4 }

    /// Inserts what is pending in both tables, and keeps the duplicate that comes first in the file: the tables
    /// are filled in batches of their own, so a later line of one table may have been inserted (and found a
    /// duplicate) before an earlier line of the other.
    mutating func flush() {
        let found4 = table4!.flush()
        let found6 = table6!.flush().map { (line: $0.line, slot: map4Capacity + $0.slot) }
        for found in [found4, found6] {
            if let found, found.line < duplicate?.line ?? Int.max { duplicate = found }
        }
    }

    func finish() -> Built {
        let t4 = table4!
        let t6 = table6!
        return Built(memory: [t4.memory, t6.memory], table4: t4.table, table6: t6.table, count: t4.count + t6.count,
                     commands: commands, waits: waits.values, unpacked: unpacked, maxWait: maxWait)
    }

    // MARK: Duplicates (the rare path)

    /// Reads the input again for the first line with the key of the duplicate's slot, and throws the error.
    mutating func reportDuplicate(_ found: (line: Int, slot: Int), map: DeviceMap,
                                  _ readInput: (inout MapLoader) throws(InputFileError) -> Void) throws(InputFileError) {
        self.map = map
        defer { self.map = nil }
        mode = .findFirst(slot: found.slot)
        lineNumber = 0
        foundLine = nil
        duplicate = nil
        try readInput(&self)
        let first = foundLine ?? found.line
        let device = map.device(at: found.slot)
        let shown = device.isIPv4 ? "\(device)" : "[\(device)]"
        throw InputFileError(file: fileName, line: found.line,
                             message: "duplicate entry for \(shown):\(map.command(at: found.slot)) (first defined on line \(first))")
    }
}

/// One hash table being filled: 64-byte buckets at most `DeviceMap.loadFactor` full for the entries counted,
/// allocated and faulted in once. Keys are inserted in batches, each batch's buckets loaded together first.
struct TableBuilder<S: MapSlot> {
    let memory: LargeMemory
    let slots: UnsafeMutablePointer<S>
    let buckets: Int
    var count = 0
    var maxDisplacement = 0
    /// Added, not yet inserted: the slot, its home bucket, its line.
    private var pending: [(slot: S, bucket: Int, line: Int)] = []
    var pendingCount: Int { pending.count }
    /// Whatever the batch's early loads read: kept so that the loads are not optimised away.
    private var touched: UInt64 = 0

    /// Keys per batch: enough misses in flight to cover the memory latency (a 10M-entry table is 200 MB).
    static var batch: Int { 32 }

    init(entries: Int) {
        precondition(MemoryLayout<S>.stride * S.perBucket == 64, "a bucket is one cache line")
        buckets = max(1, Int((Double(entries) / (Double(S.perBucket) * DeviceMap.loadFactor)).rounded(.up)))
        memory = LargeMemory(byteCount: buckets * 64)
        slots = memory.typed(S.self)
        pending.reserveCapacity(TableBuilder.batch)
    }

    var table: DeviceMap.Table {
        DeviceMap.Table(slots: memory.base, buckets: buckets, maxDisplacement: maxDisplacement)
    }

    /// Adds a key; inserts the batch when it is full. Returns the line and slot of the first key of the batch
    /// that the table already had.
    @inline(__always)
    mutating func add(_ slot: S, line: Int) -> (line: Int, slot: Int)? {
        pending.append((slot, DeviceMap.Table.bucket(slot.hash, buckets), line))
        return pending.count == TableBuilder.batch ? flush() : nil
    }

    /// Inserts the pending keys in order; stops at the first one the table already has.
    mutating func flush() -> (line: Int, slot: Int)? {
        defer { pending.removeAll(keepingCapacity: true) }
        let perBucket = S.perBucket
        // Load every pending key's bucket first, in a tight loop of independent loads: their misses are served
        // together (one memory latency for the batch), where inserting key by key would wait for each in turn.
        // (A load stands in for a prefetch instruction, which Swift cannot issue: loading a key's bucket while
        // parsing its line stalled the parser on the load, 83% of its samples.)
        for p in pending { touched &+= UnsafeRawPointer(slots + p.bucket &* perBucket).load(as: UInt64.self) }
        for (new, home, line) in pending {
            var b = home
            probing: while true {
                let bucket = slots + b &* perBucket
                for j in 0..<perBucket {
                    if bucket[j].isEmpty {
                        bucket[j] = new
                        break probing
                    }
                    if bucket[j].sameKey(new) { return (line, b &* perBucket + j) }
                }
                b += 1
                if b == buckets { b = 0 }
            }
            count += 1
            maxDisplacement = max(maxDisplacement, b >= home ? b - home : b + buckets - home)
        }
        if touched == 1 { TableBuilder.keep(touched) }
        return nil
    }

    @inline(never) static func keep(_ value: UInt64) { _ = value }
}

/// What `TableBuilder` needs of a slot type.
protocol MapSlot {
    /// Slots per 64-byte bucket.
    static var perBucket: Int { get }
    var hash: UInt64 { get }
    var isEmpty: Bool { get }
    func sameKey(_ other: Self) -> Bool
}

extension DeviceMap.Slot4: MapSlot {
    static var perBucket: Int { DeviceMap.slotsPerBucket4 }
    var hash: UInt64 {
        DeviceMap.hash(high: 0, low: 0x0000_FFFF_0000_0000 | key >> 32, command: UInt32(truncatingIfNeeded: key))
    }
    var isEmpty: Bool { key == 0 }
    func sameKey(_ other: Self) -> Bool { key == other.key }
}

extension DeviceMap.Slot6: MapSlot {
    static var perBucket: Int { DeviceMap.slotsPerBucket6 }
    var hash: UInt64 { DeviceMap.hash(high: high, low: low, command: UInt32(truncatingIfNeeded: command)) }
    var isEmpty: Bool { command == 0 }
    func sameKey(_ other: Self) -> Bool { high == other.high && low == other.low && command == other.command }
}

/// Reads a file in blocks of whole lines into one buffer that is reused (and grown only for a line longer than
/// it): the file is never in memory whole.
enum BlockReader {
    /// 1 MiB: big enough that a read costs little per line, small beside any map worth streaming.
    static let blockSize = 1 << 20

    /// Calls `body` with each block until it returns false.
    static func forEachBlock(fd: Int32, name: String,
                             _ body: (UnsafeRawBufferPointer) throws(InputFileError) -> Bool) throws(InputFileError) {
        var capacity = blockSize
        var buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        defer { buffer.deallocate() }
        var filled = 0
        while true {
            let n = read(fd, buffer + filled, capacity - filled)
            if n < 0 {
                if errno == EINTR { continue }
                throw InputFileError(file: name, line: nil, message: FileInput.describe(errno: errno))
            }
            if n == 0 {
                if filled > 0 { _ = try body(UnsafeRawBufferPointer(start: buffer, count: filled)) }
                return
            }
            filled += n
            var end = filled
            while end > 0 && buffer.load(fromByteOffset: end - 1, as: UInt8.self) != 0x0A { end -= 1 }
            if end > 0 {
                guard try body(UnsafeRawBufferPointer(start: buffer, count: end)) else { return }
                filled -= end
                if filled > 0 { memmove(buffer, buffer + end, filled) }
            } else if filled == capacity {
                // One line longer than the buffer: grow it (bounded by the file; only a malformed map gets here).
                let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 64)
                grown.copyMemory(from: buffer, byteCount: filled)
                buffer.deallocate()
                buffer = grown
                capacity *= 2
            }
        }
    }
}
