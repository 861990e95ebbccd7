#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Parses a map file in place (memchr for line ends, fields split from the right) into the raw arrays that
/// `DeviceMap` keeps. Everything is sized from the line count up front, so loading does no per-line allocation.
///
/// Two phases, for speed: parsing appends entries and their hashes sequentially; then the hash table is built
/// with the entries bucketed by slot region, so that inserting a million keys walks the table in order instead
/// of taking a cache miss per key (that miss was two thirds of the load time).
struct MapLoader {
    typealias Entry = DeviceMap.Entry
    typealias Slot = DeviceMap.Slot

    let base: UnsafePointer<UInt8>?
    let size: Int
    let fileName: String
    /// Offset of the first NUL byte in the file (Int.max when there is none).
    let nulOffset: Int

    let entryMemory: LargeMemory
    let hashMemory: LargeMemory
    var slotMemory: LargeMemory?
    let entries: UnsafeMutablePointer<Entry>
    var count = 0
    var commands = CommandInterner()
    var waits = WaitInterner()
    let hashes: UnsafeMutablePointer<UInt64>
    var slots: UnsafeMutablePointer<Slot>? = nil
    var slotMask = 0
    var maxWait: UInt64 = 0

    init(data: UnsafeRawBufferPointer, fileName: String) throws(InputFileError) {
        self.fileName = fileName
        size = data.count
        base = data.baseAddress?.assumingMemoryBound(to: UInt8.self)
        // Entry numbers are 32-bit; 2 GiB keeps them far from overflowing.
        guard size < 1 << 31 else {
            throw InputFileError(file: fileName, line: nil, message: "too large (over 2 GiB)")
        }
        var lines = 1
        var nul = Int.max
        if let base, size > 0 {
            if let hit = memchr(base, 0, size) { nul = UnsafeRawPointer(hit) - UnsafeRawPointer(base) }
            var p = UnsafeRawPointer(base)
            let end = p + size
            while p < end, let hit = memchr(p, 0x0A, end - p) {
                lines += 1
                p = UnsafeRawPointer(hit) + 1
            }
        }
        nulOffset = nul
        entryMemory = LargeMemory(byteCount: lines * MemoryLayout<Entry>.stride)
        hashMemory = LargeMemory(byteCount: lines * MemoryLayout<UInt64>.stride)
        entries = entryMemory.typed(Entry.self)
        hashes = hashMemory.typed(UInt64.self)
    }

    func deallocate() {
        entryMemory.deallocate()
        hashMemory.deallocate()
        slotMemory?.deallocate()
        commands.deallocate()
    }

    @inline(__always) static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D }

    mutating func run() throws(InputFileError) {
        // A bad line stops parsing, but a duplicate among the lines before it is the earlier error: build the
        // table over what was parsed first, then report whichever comes first in the file.
        var lineError: InputFileError?
        do {
            try parseLines()
        } catch {
            lineError = error
        }
        if count > 0 { try buildTable() }
        if let lineError { throw lineError }
        if count == 0 { throw noEntries() }
    }

    mutating func parseLines() throws(InputFileError) {
        guard let base, size > 0 else { return }
        var pos = 0
        var lineNumber = 0
        while pos < size {
            lineNumber += 1
            let lineStart = pos
            var lineEnd = size
            if let hit = memchr(base + pos, 0x0A, size - pos) {
                lineEnd = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
            }
            pos = lineEnd + 1
            if nulOffset < lineEnd {
                throw InputFileError(file: fileName, line: lineNumber, message: "contains a NUL byte: not a text file")
            }
            var s = lineStart
            var e = lineEnd
            while s < e && MapLoader.isBlank(base[s]) { s += 1 }
            while e > s && MapLoader.isBlank(base[e - 1]) { e -= 1 }
            if s == e || base[s] == UInt8(ascii: "#") { continue }
            try parseLine(start: s, end: e, number: lineNumber)
        }
    }

    func noEntries() -> InputFileError {
        InputFileError(file: fileName, line: nil,
                       message: "no entries: expected lines of ip:command:response:wait (blank and # lines are skipped)")
    }

    @inline(__always) func bytes(_ s: Int, _ e: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base! + s, count: e - s)
    }

    @inline(__always) func lastColon(from s: Int, before e: Int) -> Int {
        var i = e - 1
        while i >= s && base![i] != UInt8(ascii: ":") { i -= 1 }
        return i
    }

    mutating func parseLine(start s: Int, end e: Int, number: Int) throws(InputFileError) {
        func fail(_ message: String) -> InputFileError {
            InputFileError(file: fileName, line: number, message: message)
        }
        // Fields from the right: the device may be IPv6 and hold colons of its own.
        let c3 = lastColon(from: s, before: e)
        let c2 = c3 > s ? lastColon(from: s, before: c3) : s - 1
        let c1 = c2 > s ? lastColon(from: s, before: c2) : s - 1
        guard c1 >= s else {
            let fields = c3 < s ? 1 : (c2 < s ? 2 : 3)
            throw fail("expected ip:command:response:wait, found \(fields) field\(fields == 1 ? "" : "s") in '\(FileInput.quote(bytes(s, e)))'")
        }
        let deviceText = bytes(s, c1)
        let commandText = bytes(c1 + 1, c2)
        let responseText = bytes(c2 + 1, c3)
        let waitText = bytes(c3 + 1, e)

        guard let device = DeviceAddress.parse(deviceText) else {
            throw fail("invalid device address '\(FileInput.quote(deviceText))': expected an IPv4 address such as 10.0.0.1 or an IPv6 address such as 2001:db8::1")
        }
        guard ItemSyntax.isValidCommand(commandText) else {
            throw fail("invalid command '\(FileInput.quote(commandText))': \(ItemSyntax.ItemError.badCommand)")
        }
        let response: Int64
        switch ResponseParser.parse(responseText) {
        case .success(let v): response = v
        case .failure(.invalid):
            throw fail("invalid response '\(FileInput.quote(responseText))': expected a whole number such as 1 or -5")
        case .failure(.outOfRange):
            throw fail("invalid response '\(FileInput.quote(responseText))': outside the signed 64-bit range -9223372036854775808 to 9223372036854775807")
        }
        let wait: UInt64
        switch WaitParser.parse(waitText) {
        case .success(let v): wait = v
        case .failure(.invalid):
            throw fail("invalid wait '\(FileInput.quote(waitText))': expected seconds >= 0 such as 1 or 0.25")
        case .failure(.tooPrecise):
            throw fail("invalid wait '\(FileInput.quote(waitText))': at most 9 decimals (nanoseconds)")
        case .failure(.tooLarge):
            throw fail("invalid wait '\(FileInput.quote(waitText))': at most 86400 seconds (one day)")
        }

        let command = commands.intern(UnsafeRawPointer(base! + c1 + 1), c2 - c1 - 1) + 1
        hashes[count] = DeviceMap.hash(high: device.high, low: device.low, command: command)
        entries[count] = Entry(high: device.high, low: device.low, response: response, wait: wait,
                               packed: Slot.pack(response: response, waitNumber: waits.intern(wait)),
                               line: UInt32(truncatingIfNeeded: number), command: command - 1)
        count += 1
        if wait > maxWait { maxWait = wait }
    }

    /// Builds the open-addressing table over the parsed entries; throws on the first duplicate (by line).
    mutating func buildTable() throws(InputFileError) {
        var tableSize = 16
        while tableSize < count * 2 { tableSize <<= 1 }
        let mask = tableSize - 1
        let tableMemory = LargeMemory(byteCount: tableSize * MemoryLayout<Slot>.stride)
        slotMemory = tableMemory
        let table = tableMemory.typed(Slot.self)
        slots = table
        slotMask = mask

        // Counting sort of the entries by table region (16 Ki regions), so that the insert pass below walks the
        // table in order instead of taking a cache miss per key (that miss was two thirds of the load time).
        let tableBits = tableSize.trailingZeroBitCount
        let shift = max(tableBits - 14, 0)
        let regions = 1 << (tableBits - shift)
        var starts = [Int](repeating: 0, count: regions + 1)
        for i in 0..<count { starts[(Int(truncatingIfNeeded: hashes[i]) & mask) >> shift + 1] += 1 }
        for r in 0..<regions { starts[r + 1] += starts[r] }
        // Whole slots, built while the entries are read in order, so the insert pass reads them sequentially.
        let orderMemory = LargeMemory(byteCount: count * MemoryLayout<Slot>.stride)
        defer { orderMemory.deallocate() }
        let order = orderMemory.typed(Slot.self)
        for i in 0..<count {
            let r = (Int(truncatingIfNeeded: hashes[i]) & mask) >> shift
            let e = entries[i]
            order[starts[r]] = Slot(high: e.high, low: e.low, command: e.command + 1, entry: UInt32(i), packed: e.packed)
            starts[r] += 1
        }

        // Insert in region order. Of equal keys the table keeps the earliest line; the error to report is the
        // smallest line that repeats an earlier key, paired with the earliest line of that key.
        var duplicate: (line: UInt32, first: Int)?
        for k in 0..<count {
            let new = order[k]
            var pos = Int(truncatingIfNeeded: DeviceMap.hash(high: new.high, low: new.low, command: new.command)) & mask
            while true {
                let slot = table[pos]
                if slot.command == 0 {
                    table[pos] = new
                    break
                }
                if slot.low == new.low && slot.high == new.high && slot.command == new.command {
                    let i = Int(new.entry), j = Int(slot.entry)
                    let (first, later) = entries[i].line < entries[j].line ? (i, j) : (j, i)
                    if duplicate == nil || entries[later].line < duplicate!.line {
                        duplicate = (entries[later].line, first)
                    }
                    if first == i { table[pos] = new }
                    break
                }
                pos = (pos + 1) & mask
            }
        }
        if let duplicate {
            let e = entries[duplicate.first]
            let device = DeviceAddress(high: e.high, low: e.low)
            let command = commands.string(of: Int(e.command))
            let shown = device.isIPv4 ? "\(device)" : "[\(device)]"
            throw InputFileError(file: fileName, line: Int(duplicate.line),
                                 message: "duplicate entry for \(shown):\(command) (first defined on line \(e.line))")
        }
    }

    /// Hands the arrays over (the hashes were only needed to build the table). Nothing is trimmed: the unused
    /// tails were never touched, so they cost address space, not memory.
    func finish() -> (memory: [LargeMemory], entries: UnsafeMutablePointer<Entry>, count: Int,
                      commands: CommandInterner, slots: UnsafeMutablePointer<Slot>, slotMask: Int,
                      waits: [UInt64], maxWait: UInt64) {
        hashMemory.deallocate()
        return ([entryMemory, slotMemory!], entries, count, commands, slots!, slotMask, waits.values, maxWait)
    }
}
