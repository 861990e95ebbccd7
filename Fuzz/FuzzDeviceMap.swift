// Fuzz target "map": arbitrary bytes as a device map file through DeviceMap(parsing:fileName:), compared with a
// line-by-line reference model: the same entries in the same order, or an error on the same line.
import AsyncComCore

private let fileName = "fuzz.map"

private struct RefEntry {
    var device: DeviceAddress
    var command: String
    var response: Int64
    var wait: UInt64
    var line: Int
}

private struct Key: Hashable {
    var device: DeviceAddress
    var command: String
}

/// Seconds as `digits` or `digits.digits` (at most 9 decimals, at most one day) to nanoseconds.
private func referenceWait(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
    let parts = bytes.split(separator: UInt8(ascii: "."), maxSplits: 1, omittingEmptySubsequences: false)
    let isDigits = { (p: Slice<UnsafeRawBufferPointer>) in !p.isEmpty && p.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
    guard isDigits(parts[0]), parts.count == 1 || (isDigits(parts[1]) && parts[1].count <= 9) else { return nil }
    let significant = parts[0].drop(while: { $0 == 0x30 })
    guard significant.count <= 5 else { return nil }
    let seconds = significant.isEmpty ? 0 : UInt64(String(decoding: significant, as: UTF8.self))!
    var fraction: UInt64 = 0
    if parts.count == 2 {
        fraction = UInt64(String(decoding: parts[1], as: UTF8.self) + String(repeating: "0", count: 9 - parts[1].count))!
    }
    let nanos = seconds * 1_000_000_000 + fraction
    return nanos <= 86_400 * 1_000_000_000 ? nanos : nil
}

/// The reference loader: the entries, or the 1-based line of the first error (nil: no entries at all).
private func referenceMap(_ input: UnsafeRawBufferPointer) -> Result<[RefEntry], RefError> {
    var entries: [RefEntry] = []
    var seen: [Key: Int] = [:]
    for (k, raw) in referenceLines(input).enumerated() {
        let number = k + 1
        if raw.contains(0) { return .failure(RefError(line: number)) }
        var s = 0
        var e = raw.count
        // Blanks (SP, HTAB) on both sides, CRs only at the end (`LineFramer.trimmed`, as for every file): a CR
        // before the text is content (a fuzzed " CR #2" line is an error, not a comment).
        let blank = { (c: UInt8) in c == 0x20 || c == 0x09 }
        while s < e && blank(raw[s]) { s += 1 }
        while e > s && (blank(raw[e - 1]) || raw[e - 1] == 0x0D) { e -= 1 }
        if s == e || raw[s] == UInt8(ascii: "#") { continue }
        let line = UnsafeRawBufferPointer(rebasing: raw[s..<e])
        // Three fields from the right; the device keeps any colons left over.
        var colons: [Int] = []
        var i = line.count - 1
        while i >= 0 && colons.count < 3 {
            if line[i] == UInt8(ascii: ":") { colons.append(i) }
            i -= 1
        }
        guard colons.count == 3 else { return .failure(RefError(line: number)) }
        let (c1, c2, c3) = (colons[2], colons[1], colons[0])
        let command = UnsafeRawBufferPointer(rebasing: line[(c1 + 1)..<c2])
        guard let device = referenceAddress(UnsafeRawBufferPointer(rebasing: line[..<c1])),
              referenceCommand(command),
              let response = referenceInt64(UnsafeRawBufferPointer(rebasing: line[(c2 + 1)..<c3])),
              let wait = referenceWait(UnsafeRawBufferPointer(rebasing: line[(c3 + 1)...]))
        else { return .failure(RefError(line: number)) }
        let key = Key(device: device, command: String(decoding: command, as: UTF8.self))
        if let first = seen[key] { return .failure(RefError(line: number, firstDefinition: first)) }
        seen[key] = number
        entries.append(RefEntry(device: device, command: key.command, response: response, wait: wait, line: number))
    }
    return entries.isEmpty ? .failure(RefError(line: nil)) : .success(entries)
}

private struct RefError: Error {
    var line: Int?
    /// For a duplicate key: the line that defined it first.
    var firstDefinition: Int? = nil
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let lineCount = input.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
    let expected = referenceMap(input)
    do throws(InputFileError) {
        let map = try DeviceMap(parsing: input, fileName: fileName)
        guard case .success(let entries) = expected else {
            fail("loaded \(map.count) entries, reference says error on line \(String(describing: expected))")
        }
        check(map, entries)
    } catch {
        require(error.file == fileName && !error.message.isEmpty, "bad error \(error)")
        require(!error.description.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }), "error is not one line: \(error)")
        if let line = error.line { require(line >= 1 && line <= lineCount, "error line \(line) of \(lineCount)") }
        switch expected {
        case .success(let entries): fail("error \(error), reference loaded \(entries.count) entries")
        case .failure(let ref):
            require(ref.line == error.line, "error \(error), reference says line \(String(describing: ref.line))")
            if let first = ref.firstDefinition {
                require(error.message.hasSuffix("(first defined on line \(first))"), "error \(error), reference says first defined on line \(first)")
            }
        }
    }
    return 0
}

private func check(_ map: DeviceMap, _ entries: [RefEntry]) {
    require(map.count == entries.count, "\(map.count) entries, reference \(entries.count)")
    var byKey: [Key: Int] = [:]
    var largest: UInt64 = 0
    let reply = ByteBuffer(capacity: 16)
    var indices = Set<Int>()
    map.forEachEntry { indices.insert($0) }
    require(indices.count == entries.count, "\(indices.count) entries listed, reference \(entries.count)")
    for ref in entries {
        let i = map.lookup(device: ref.device, command: ref.command)
        require(indices.contains(i), "key \(ref) looks up to \(i), not to a listed entry")
        indices.remove(i)
        byKey[Key(device: ref.device, command: ref.command)] = i
        largest = max(largest, ref.wait)
        require(map.device(at: i) == ref.device && map.command(at: i) == ref.command && map.response(at: i) == ref.response
                    && map.waitNanos(at: i) == ref.wait,
                "entry \(i): \(map.device(at: i)) \(map.command(at: i)) \(map.response(at: i)) \(map.waitNanos(at: i)), reference \(ref)")
        reply.clear()
        map.appendResponse(at: i, to: reply)
        require(reply.readableString == String(ref.response), "response \(reply.readableString), reference \(ref.response)")
    }
    require(map.largestWaitNanos == largest, "largest wait \(map.largestWaitNanos), reference \(largest)")

    // Near misses: whatever a lookup returns must be the entry with exactly that key.
    for ref in entries.prefix(16) {
        let probes = [
            Key(device: ref.device, command: String(ref.command.dropLast())),
            Key(device: ref.device, command: ref.command + "x"),
            Key(device: DeviceAddress(high: ref.device.high, low: ref.device.low ^ 1), command: ref.command),
            Key(device: DeviceAddress(high: ref.device.high ^ (1 << 63), low: ref.device.low), command: ref.command),
        ]
        for p in probes {
            let got = map.lookup(device: p.device, command: p.command)
            require(got == (byKey[p] ?? -1), "lookup \(p) gave \(got), reference \(byKey[p] ?? -1)")
        }
    }

    // The server finds each entry under its printed address (IPv6 in brackets) with the response and wait.
    for (i, ref) in entries.prefix(8).enumerated() {
        let device = ref.device.isIPv4 ? ref.device.description : "[\(ref.device.description)]"
        var line = "REQ \(i) \(device):\(ref.command)"
        reply.clear()
        let outcome = line.withUTF8 { ServerProtocol.handle(line: UnsafeRawBufferPointer($0), map: map, maxItems: 1, reply: reply) }
        require(outcome == .request(id: UInt64(i), waitNanos: ref.wait, commands: 1, unknown: 0)
                    && reply.readableString == "RES \(i) \(ref.response)\n",
                "\(line) gave \(outcome) \(reply.readableString), reference \(ref)")
    }
}
