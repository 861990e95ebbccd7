import Glibc

/// Parses a map file into the hash tables `DeviceMap` keeps. Loading allocates nothing per line.
///
/// The file is read in blocks of whole lines (`BlockReader`), never whole: a 10M-entry map is ~220 MB of text
/// and mapping or reading all of it would put the whole file in the process beside its tables. Each entry is
/// parsed straight into the slot it will occupy and appended to a staging array (16 bytes an IPv4 entry); then
/// each table is sized from its exact count, the staging array is partitioned in place by table region, and
/// the slots are inserted region by region, so that inserting walks the table in order instead of taking a
/// cache miss per key (that miss was two thirds of the load time). Peak: staging + tables + one block.
///
/// Nothing records which line defined an entry: a duplicate key only sets a flag while inserting, and then
/// `findDuplicate` reads the input again to name the lines (the rare path pays, not every load).
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

    /// The shortest lines that can hold an entry, newline included: `0.0.0.0:a:0:0` and `:::a:0:0`. They bound
    /// the entries of a file of known size, so the staging arrays are reserved once (address space; only what
    /// is written becomes resident).
    static let shortestLine4 = 14
    static let shortestLine6 = 9

    enum Mode {
        /// Parse and stage every entry.
        case build
        /// Mark each key's slot; stop at the first line whose key is already marked.
        case findRepeat(seen: UnsafeMutablePointer<UInt64>)
        /// Stop at the first line with the key of `slot`.
        case findFirst(slot: Int)
    }

    let fileName: String
    var mode = Mode.build
    var lineNumber = 0
    /// Parsing stops before this line (set by a bad line, so that a rescan reads the same entries).
    var stopLine = Int.max
    /// The line a rescan stopped at (`findRepeat`, `findFirst`).
    var foundLine: Int?
    var foundIndex = -1

    var commands = CommandInterner()
    var waits = WaitInterner()
    var unpacked: [DeviceMap.Unpacked] = []
    var maxWait: UInt64 = 0
    let staging4: LargeMemory
    let staging6: LargeMemory
    var count4 = 0
    var count6 = 0
    /// The built map, set by `buildTables` (rescans look keys up in it).
    var map: DeviceMap?

    init(fileName: String, maxBytes: Int) {
        self.fileName = fileName
        staging4 = LargeMemory(reserving: (maxBytes / MapLoader.shortestLine4 + 1) * MemoryLayout<Slot4>.stride)
        staging6 = LargeMemory(reserving: (maxBytes / MapLoader.shortestLine6 + 1) * MemoryLayout<Slot6>.stride)
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
        var loader = MapLoader(fileName: path, maxBytes: Int(st.st_size))
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
        var loader = MapLoader(fileName: fileName, maxBytes: data.count)
        return try loader.run { loader throws(InputFileError) in _ = try loader.parse(block: data) }
    }

    /// Parses the input (`readInput` feeds it to `parse(block:)`, from the start each time it is called), builds
    /// the tables, and on a duplicate key reads the input again to report it.
    mutating func run(_ readInput: (inout MapLoader) throws(InputFileError) -> Void) throws(InputFileError) -> Built {
        defer {
            staging4.deallocate()
            staging6.deallocate()
        }
        // A bad line stops parsing, but a duplicate among the lines before it is the earlier error: build the
        // tables over what was parsed first, then report whichever comes first in the file.
        var lineError: InputFileError?
        do {
            try readInput(&self)
        } catch {
            lineError = error
            stopLine = error.line ?? Int.max
        }
        let count = count4 + count6
        let (built, duplicate) = buildTables()
        if duplicate {
            map = DeviceMap(built)
            try reportDuplicate(readInput)
        }
        if let lineError {
            if map == nil { for block in built.memory { block.deallocate() }; built.commands.deallocate() }
            throw lineError
        }
        if count == 0 {
            for block in built.memory { block.deallocate() }
            built.commands.deallocate()
            throw InputFileError(file: fileName, line: nil,
                                 message: "no entries: expected lines of ip:command:response:wait (blank and # lines are skipped)")
        }
        return built
    }

    // MARK: Parsing

    /// Parses whole lines (the last may lack its newline only at the end of the input), numbering them on from
    /// the previous block. False once the rest of the input is not needed (a rescan found its line).
    mutating func parse(block: UnsafeRawBufferPointer) throws(InputFileError) -> Bool {
        guard let base = block.baseAddress?.assumingMemoryBound(to: UInt8.self), block.count > 0 else { return true }
        let size = block.count
        var nul = Int.max
        if let hit = memchr(base, 0, size) { nul = UnsafeRawPointer(hit) - UnsafeRawPointer(base) }
        var lines = LineFramer.Lines(block)
        while let line = lines.next() {
            if lineNumber + 1 >= stopLine || foundLine != nil { return false }
            lineNumber += 1
            if nul < lines.offset {
                throw InputFileError(file: fileName, line: lineNumber, message: "contains a NUL byte: not a text file")
            }
            let content = LineFramer.trimmed(line)
            if content.isEmpty || content[0] == UInt8(ascii: "#") { continue }
            let s = UnsafeRawPointer(content.baseAddress!) - UnsafeRawPointer(base)
            try parseLine(base, start: s, end: s + content.count)
        }
        return true
    }

    @inline(__always) static func lastColon(_ base: UnsafePointer<UInt8>, from s: Int, before e: Int) -> Int {
        var i = e - 1
        while i >= s && base[i] != UInt8(ascii: ":") { i -= 1 }
        return i
    }

    mutating func parseLine(_ base: UnsafePointer<UInt8>, start s: Int, end e: Int) throws(InputFileError) {
        func bytes(_ s: Int, _ e: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base + s, count: e - s) }
        let number = lineNumber
        func fail(_ message: String) -> InputFileError {
            InputFileError(file: fileName, line: number, message: message)
        }
        // Fields from the right: the device may be IPv6 and hold colons of its own.
        let c3 = MapLoader.lastColon(base, from: s, before: e)
        let c2 = c3 > s ? MapLoader.lastColon(base, from: s, before: c3) : s - 1
        let c1 = c2 > s ? MapLoader.lastColon(base, from: s, before: c2) : s - 1
        guard c1 >= s else {
            let fields = c3 < s ? 1 : (c2 < s ? 2 : 3)
            throw fail("expected ip:command:response:wait, found \(fields) field\(fields == 1 ? "" : "s") in '\(Wire.printable(bytes(s, e), limit: Wire.fileQuoteLimit))'")
        }
        let deviceText = bytes(s, c1)
        let commandText = bytes(c1 + 1, c2)
        let responseText = bytes(c2 + 1, c3)
        let waitText = bytes(c3 + 1, e)

        guard let device = DeviceAddress.parse(deviceText) else {
            throw fail("invalid device address '\(Wire.printable(deviceText, limit: Wire.fileQuoteLimit))': expected an IPv4 address such as 10.0.0.1 or an IPv6 address such as 2001:db8::1")
        }
        guard ItemSyntax.isValidCommand(commandText) else {
            throw fail("invalid command '\(Wire.printable(commandText, limit: Wire.fileQuoteLimit))': \(ItemSyntax.ItemError.badCommand)")
        }
        let response: Int64
        switch ResponseParser.parse(responseText) {
        case .success(let v): response = v
        case .failure(.invalid):
            throw fail("invalid response '\(Wire.printable(responseText, limit: Wire.fileQuoteLimit))': expected a whole number such as 1 or -5")
        case .failure(.outOfRange):
            throw fail("invalid response '\(Wire.printable(responseText, limit: Wire.fileQuoteLimit))': outside the signed 64-bit range -9223372036854775808 to 9223372036854775807")
        }
        let wait: UInt64
        switch WaitParser.parse(waitText) {
        case .success(let v): wait = v
        case .failure(.invalid):
            throw fail("invalid wait '\(Wire.printable(waitText, limit: Wire.fileQuoteLimit))': expected seconds >= 0 such as 1 or 0.25")
        case .failure(.tooPrecise):
            throw fail("invalid wait '\(Wire.printable(waitText, limit: Wire.fileQuoteLimit))': at most 9 decimals (nanoseconds)")
        case .failure(.tooLarge):
            throw fail("invalid wait '\(Wire.printable(waitText, limit: Wire.fileQuoteLimit))': at most 86400 seconds (one day)")
        }

        let command = commands.intern(UnsafeRawPointer(base + c1 + 1), c2 - c1 - 1) + 1
        switch mode {
        case .build:
            var value: UInt64
            if let packed = DeviceMap.Value.pack(response: response, waitNumber: waits.intern(wait)) {
                value = packed
            } else {
                value = DeviceMap.Value.unpacked << 48 | UInt64(unpacked.count)
                unpacked.append(DeviceMap.Unpacked(response: response, wait: wait))
            }
            if device.isIPv4 {
                staging4.typed(Slot4.self)[count4] = Slot4(key: device.low << 32 | UInt64(command), value: value)
                count4 += 1
            } else {
                staging6.typed(Slot6.self)[count6] = Slot6(high: device.high, low: device.low, command: UInt64(command),
                                                           value: value)
                count6 += 1
            }
            if wait > maxWait { maxWait = wait }
        case .findRepeat(let seen):
            let index = map!.lookup(device: device, command: bytes(c1 + 1, c2))
            let (word, bit) = (index >> 6, UInt64(1) << UInt64(index & 63))
            if seen[word] & bit != 0 {
                foundLine = number
                foundIndex = index
            }
            seen[word] |= bit
        case .findFirst(let slot):
            if map!.lookup(device: device, command: bytes(c1 + 1, c2)) == slot { foundLine = number }
        }
    }

    // MARK: Tables

    /// Builds both tables from the staging arrays; true when some key was staged twice.
    mutating func buildTables() -> (Built, duplicate: Bool) {
        let (t4, m4, d4) = MapLoader.buildTable(staging4.typed(Slot4.self), count: count4,
                                                perBucket: DeviceMap.slotsPerBucket4)
        let (t6, m6, d6) = MapLoader.buildTable(staging6.typed(Slot6.self), count: count6,
                                                perBucket: DeviceMap.slotsPerBucket6)
        let built = Built(memory: [m4, m6], table4: t4, table6: t6, count: count4 + count6, commands: commands,
                          waits: waits.values, unpacked: unpacked, maxWait: maxWait)
        return (built, d4 || d6)
    }

    /// One table over `count` staged slots, 64-byte buckets at most `DeviceMap.loadFactor` full. Reorders the
    /// staged slots.
    static func buildTable<S: MapSlot>(_ staged: UnsafeMutablePointer<S>, count: Int, perBucket: Int)
        -> (DeviceMap.Table, LargeMemory, duplicate: Bool)
    {
        precondition(MemoryLayout<S>.stride * perBucket == 64, "a bucket is one cache line")
        let buckets = max(1, Int((Double(count) / (Double(perBucket) * DeviceMap.loadFactor)).rounded(.up)))
        let memory = LargeMemory(byteCount: buckets * 64)
        let table = memory.typed(S.self)

        // Partition the staged slots in place by table region (an American flag sort's one pass), so that the
        // insert pass below walks the table in order. A region's part of the table is small enough to stay in
        // the cache while its keys go in.
        let regions = min(1 << 14, buckets)
        var next = [Int](repeating: 0, count: regions + 1)
        for i in 0..<count { next[DeviceMap.Table.bucket(staged[i].hash, regions) + 1] += 1 }
        for r in 0..<regions { next[r + 1] += next[r] }
        let ends = Array(next.dropFirst())
        for r in 0..<regions {
            while next[r] < ends[r] {
                var x = staged[next[r]]
                var d = DeviceMap.Table.bucket(x.hash, regions)
                while d != r {
                    swap(&x, &staged[next[d]])
                    next[d] += 1
                    d = DeviceMap.Table.bucket(x.hash, regions)
                }
                staged[next[r]] = x
                next[r] += 1
            }
        }

        var duplicate = false
        var maxDisplacement = 0
        for k in 0..<count {
            let new = staged[k]
            let home = DeviceMap.Table.bucket(new.hash, buckets)
            var b = home
            probing: while true {
                let line = table + b * perBucket
                for j in 0..<perBucket {
                    if line[j].isEmpty {
                        line[j] = new
                        break probing
                    }
                    if line[j].sameKey(new) {
                        duplicate = true
                        break probing
                    }
                }
                b += 1
                if b == buckets { b = 0 }
            }
            maxDisplacement = max(maxDisplacement, b >= home ? b - home : b + buckets - home)
        }
        return (DeviceMap.Table(slots: memory.base, buckets: buckets, maxDisplacement: maxDisplacement), memory, duplicate)
    }

    // MARK: Duplicates (the rare path)

    /// Reads the input again: the first line whose key an earlier line had, then that earlier line.
    mutating func reportDuplicate(_ readInput: (inout MapLoader) throws(InputFileError) -> Void) throws(InputFileError) {
        guard let map else { return }
        let bits = map.capacity4 + map.capacity6
        let seen = UnsafeMutablePointer<UInt64>.allocate(capacity: bits / 64 + 1)
        seen.initialize(repeating: 0, count: bits / 64 + 1)
        defer { seen.deallocate() }
        try rescan(.findRepeat(seen: seen), readInput)
        guard let later = foundLine else {
            throw InputFileError(file: fileName, line: nil, message: "duplicate entries (the file changed while it was read)")
        }
        let index = foundIndex
        try rescan(.findFirst(slot: index), readInput)
        let first = foundLine ?? later
        let device = map.device(at: index)
        let shown = device.isIPv4 ? "\(device)" : "[\(device)]"
        throw InputFileError(file: fileName, line: later,
                             message: "duplicate entry for \(shown):\(map.command(at: index)) (first defined on line \(first))")
    }

    mutating func rescan(_ newMode: Mode, _ readInput: (inout MapLoader) throws(InputFileError) -> Void) throws(InputFileError) {
        mode = newMode
        lineNumber = 0
        foundLine = nil
        try readInput(&self)
    }
}

/// What `MapLoader.buildTable` needs of a slot type.
protocol MapSlot {
    var hash: UInt64 { get }
    var isEmpty: Bool { get }
    func sameKey(_ other: Self) -> Bool
}

extension DeviceMap.Slot4: MapSlot {
    var hash: UInt64 {
        DeviceMap.hash(high: 0, low: 0x0000_FFFF_0000_0000 | key >> 32, command: UInt32(truncatingIfNeeded: key))
    }
    var isEmpty: Bool { key == 0 }
    func sameKey(_ other: Self) -> Bool { key == other.key }
}

extension DeviceMap.Slot6: MapSlot {
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
