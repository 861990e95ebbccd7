#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Parses a map file in place (memchr for line ends, fields split from the right) into the raw arrays that
/// `DeviceMap` keeps. Everything is sized from the line count up front, so loading does no per-line allocation.
struct MapLoader {
    typealias Entry = DeviceMap.Entry

    let base: UnsafePointer<UInt8>?
    let size: Int
    let fileName: String
    /// Offset of the first NUL byte in the file (Int.max when there is none).
    let nulOffset: Int

    var entries: UnsafeMutablePointer<Entry>
    var count = 0
    var commandArena: UnsafeMutablePointer<UInt8>
    var commandBytes = 0
    var responseArena: UnsafeMutablePointer<UInt8>
    var responseBytes = 0
    var slots: UnsafeMutablePointer<UInt64>
    var slotMask: Int
    var maxWait: UInt64 = 0

    init(data: UnsafeRawBufferPointer, fileName: String) throws(InputFileError) {
        self.fileName = fileName
        size = data.count
        base = data.baseAddress?.assumingMemoryBound(to: UInt8.self)
        // Offsets into the arenas and entry numbers are 32-bit; 2 GiB keeps both far from overflowing.
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
        var tableSize = 16
        while tableSize < lines * 2 { tableSize <<= 1 }
        slotMask = tableSize - 1
        // A response renders to at most 20 bytes ("-9223372036854775808"); commands are copied from the file.
        entries = malloc(lines * MemoryLayout<Entry>.stride)!.assumingMemoryBound(to: Entry.self)
        commandArena = malloc(max(size, 1))!.assumingMemoryBound(to: UInt8.self)
        responseArena = malloc(lines * 20)!.assumingMemoryBound(to: UInt8.self)
        slots = calloc(tableSize, MemoryLayout<UInt64>.stride)!.assumingMemoryBound(to: UInt64.self)
    }

    func deallocate() {
        free(entries)
        free(commandArena)
        free(responseArena)
        free(slots)
    }

    @inline(__always) static func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D }

    mutating func run() throws(InputFileError) {
        guard let base, size > 0 else { throw noEntries() }
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
        if count == 0 { throw noEntries() }
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

        // Insert the key, refusing duplicates (compared as addresses, so two spellings of one IPv6 clash).
        let commandLength = c2 - c1 - 1
        let commandPointer = UnsafeRawPointer(base! + c1 + 1)
        let h = DeviceMap.hash(high: device.high, low: device.low, command: commandPointer, count: commandLength)
        let tag = h >> 32
        var i = Int(truncatingIfNeeded: h) & slotMask
        while true {
            let slot = slots[i]
            if slot == 0 { break }
            if slot >> 32 == tag {
                let other = entries[Int(slot & 0xFFFF_FFFF) - 1]
                if other.high == device.high && other.low == device.low && Int(other.commandLength) == commandLength
                    && memcmp(commandArena + Int(other.commandOffset), commandPointer, commandLength) == 0
                {
                    throw fail("duplicate entry for \(FileInput.quote(deviceText)):\(FileInput.quote(commandText)) (first defined on line \(other.line))")
                }
            }
            i = (i + 1) & slotMask
        }
        slots[i] = (tag << 32) | UInt64(count + 1)

        (commandArena + commandBytes).update(from: base! + c1 + 1, count: commandLength)
        let responseLength = MapLoader.render(response, into: responseArena + responseBytes)
        entries[count] = Entry(high: device.high, low: device.low, response: response, wait: wait,
                               commandOffset: UInt32(commandBytes), responseOffset: UInt32(responseBytes),
                               line: UInt32(truncatingIfNeeded: number), commandLength: UInt8(commandLength),
                               responseLength: UInt8(responseLength))
        commandBytes += commandLength
        responseBytes += responseLength
        count += 1
        if wait > maxWait { maxWait = wait }
    }

    /// Writes `value` in decimal at `out`, returning the length (at most 20).
    static func render(_ value: Int64, into out: UnsafeMutablePointer<UInt8>) -> Int {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch, filled from the end
        return withUnsafeMutableBytes(of: &digits) { scratch -> Int in
            var v = value.magnitude
            var i = 24
            repeat {
                i -= 1
                scratch[i] = 0x30 + UInt8(v % 10)
                v /= 10
            } while v > 0
            if value < 0 { i -= 1; scratch[i] = UInt8(ascii: "-") }
            let n = 24 - i
            for k in 0..<n { out[k] = scratch[i + k] }
            return n
        }
    }

    /// Hands the arrays over, trimmed to their used size.
    func finish() -> (entries: UnsafeMutablePointer<Entry>, count: Int, commandArena: UnsafeMutablePointer<UInt8>,
                      responseArena: UnsafeMutablePointer<UInt8>, slots: UnsafeMutablePointer<UInt64>, slotMask: Int,
                      maxWait: UInt64) {
        let e = realloc(entries, max(count, 1) * MemoryLayout<Entry>.stride)!.assumingMemoryBound(to: Entry.self)
        let c = realloc(commandArena, max(commandBytes, 1))!.assumingMemoryBound(to: UInt8.self)
        let r = realloc(responseArena, max(responseBytes, 1))!.assumingMemoryBound(to: UInt8.self)
        var table = slots
        var mask = slotMask
        // The table was sized for every line; rebuild it smaller when comments and blanks made that wasteful.
        var wanted = 16
        while wanted < count * 2 { wanted <<= 1 }
        if wanted * 4 <= slotMask + 1 {
            let smaller = calloc(wanted, MemoryLayout<UInt64>.stride)!.assumingMemoryBound(to: UInt64.self)
            let newMask = wanted - 1
            for k in 0...slotMask {
                let slot = slots[k]
                if slot == 0 { continue }
                let entry = e[Int(slot & 0xFFFF_FFFF) - 1]
                let h = DeviceMap.hash(high: entry.high, low: entry.low,
                                       command: UnsafeRawPointer(c + Int(entry.commandOffset)),
                                       count: Int(entry.commandLength))
                var i = Int(truncatingIfNeeded: h) & newMask
                while smaller[i] != 0 { i = (i + 1) & newMask }
                smaller[i] = slot
            }
            free(slots)
            table = smaller
            mask = newMask
        }
        return (e, count, c, r, table, mask, maxWait)
    }
}
