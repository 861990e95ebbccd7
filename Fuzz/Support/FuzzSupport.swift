// Shared by every fuzz target (compiled into each one; see Fuzz/run.sh).
import Glibc
import AsyncComCore

/// Stops the run when an invariant does not hold: abort() is a "deadly signal" to libFuzzer, which then saves the
/// input under fuzz-artifacts/ exactly as for a memory error or a trap.
@inline(__always)
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
             file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fail(message(), file: file, line: line) }
}

func fail(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    // write(2), not print: stdout may be buffered and lost when we abort.
    var text = "INVARIANT VIOLATED at \(file):\(line): \(message)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    abort()
}

/// Input bytes quoted for a failure message: printable ASCII kept, the rest as \xNN, cut at `limit`.
func show(_ bytes: UnsafeRawBufferPointer, limit: Int = 200) -> String {
    var out = ""
    for (i, c) in bytes.enumerated() {
        if i == limit { out += "..."; break }
        if c >= 0x20 && c < 0x7F && c != UInt8(ascii: "\\") {
            out.unicodeScalars.append(Unicode.Scalar(c))
        } else {
            let hex = Array("0123456789abcdef")
            out += "\\x"
            out.append(hex[Int(c >> 4)])
            out.append(hex[Int(c & 15)])
        }
    }
    return "'" + out + "'"
}

func show(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { show($0) } }

@inline(__always) func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

/// Blank-separated tokens of a line, as views into it (the reference the parsers are checked against).
func tokens(_ line: UnsafeRawBufferPointer) -> [UnsafeRawBufferPointer] {
    var out: [UnsafeRawBufferPointer] = []
    var i = 0
    let n = line.count
    while i < n {
        while i < n && isBlank(line[i]) { i += 1 }
        if i == n { break }
        let s = i
        while i < n && !isBlank(line[i]) { i += 1 }
        out.append(UnsafeRawBufferPointer(rebasing: line[s..<i]))
    }
    return out
}

/// ASCII-lowercased copy, for case-insensitive verb comparison.
func lowered(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
}

func equals(_ bytes: UnsafeRawBufferPointer, _ text: String) -> Bool {
    Array(bytes) == Array(text.utf8)
}

/// Reference for wire ids: 1-20 ASCII digits, value at most UInt64.max.
func referenceID(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
    guard bytes.count >= 1 && bytes.count <= 20, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
    return UInt64(String(decoding: bytes, as: UTF8.self))
}

/// Reference for 64-bit results: optional sign, then 1+ ASCII digits, in Int64 range (leading zeros allowed).
func referenceInt64(_ bytes: UnsafeRawBufferPointer) -> Int64? {
    var digits = bytes[...]
    var negative = false
    if let first = digits.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
        negative = first == UInt8(ascii: "-")
        digits = digits.dropFirst()
    }
    guard !digits.isEmpty, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
    // Strip leading zeros so that Int64(String) never sees an overlong but small number.
    let significant = digits.drop(while: { $0 == 0x30 })
    if significant.isEmpty { return 0 }
    guard significant.count <= 19 else { return nil }
    return Int64((negative ? "-" : "") + String(decoding: significant, as: UTF8.self))
}

/// Lines of `data` split at LF, terminators not included; the piece after a final LF is dropped when empty.
func referenceLines(_ data: UnsafeRawBufferPointer) -> [UnsafeRawBufferPointer] {
    var out: [UnsafeRawBufferPointer] = []
    var s = 0
    for i in 0..<data.count where data[i] == 0x0A {
        out.append(UnsafeRawBufferPointer(rebasing: data[s..<i]))
        s = i + 1
    }
    if s < data.count { out.append(UnsafeRawBufferPointer(rebasing: data[s..<data.count])) }
    return out
}

/// Reference device parser built on inet_pton, independent of DeviceAddress: a strict dotted quad (glibc's
/// inet_pton rejects leading zeros too), else an IPv6 address, optionally in brackets.
func referenceAddress(_ bytes: UnsafeRawBufferPointer) -> DeviceAddress? {
    guard !bytes.contains(0) else { return nil }  // inet_pton would stop at a NUL
    var text = Array(bytes)
    var v4 = in_addr()
    var parsed4: Int32 = 0
    text.append(0)
    text.withUnsafeBufferPointer { p in
        p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { parsed4 = inet_pton(AF_INET, $0, &v4) }
    }
    if parsed4 == 1 { return DeviceAddress(ipv4: UInt32(bigEndian: v4.s_addr)) }
    text.removeLast()
    if text.count >= 2 && text.first == UInt8(ascii: "[") && text.last == UInt8(ascii: "]") {
        text = Array(text.dropFirst().dropLast())
    }
    text.append(0)
    var v6 = in6_addr()
    var parsed6: Int32 = 0
    text.withUnsafeBufferPointer { p in
        p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { parsed6 = inet_pton(AF_INET6, $0, &v6) }
    }
    guard parsed6 == 1 else { return nil }
    return withUnsafeBytes(of: &v6) { raw in
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<8 { high = high << 8 | UInt64(raw[i]) }
        for i in 8..<16 { low = low << 8 | UInt64(raw[i]) }
        return DeviceAddress(high: high, low: low)
    }
}

/// Reference command check: 1-64 bytes of [A-Za-z0-9_.-].
func referenceCommand(_ bytes: UnsafeRawBufferPointer) -> Bool {
    bytes.count >= 1 && bytes.count <= 64 && bytes.allSatisfy { c in
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
            || c == UInt8(ascii: "_") || c == UInt8(ascii: ".") || c == UInt8(ascii: "-")
    }
}

/// Reference `device:command` split at the last colon: the device and the command, or nil when malformed.
func referenceItem(_ item: UnsafeRawBufferPointer) -> (device: DeviceAddress, command: UnsafeRawBufferPointer)? {
    guard let colon = item.lastIndex(of: UInt8(ascii: ":")) else { return nil }
    let command = UnsafeRawBufferPointer(rebasing: item[(colon + 1)...])
    guard referenceCommand(command),
          let device = referenceAddress(UnsafeRawBufferPointer(rebasing: item[..<colon])) else { return nil }
    return (device, command)
}

/// Linear search over a map's entries: the reference for its hash-table lookup.
func referenceLookup(_ map: DeviceMap, device: DeviceAddress, command: UnsafeRawBufferPointer) -> Int {
    let text = String(decoding: command, as: UTF8.self)
    var found = -1
    map.forEachEntry { i in
        if map.device(at: i) == device && map.command(at: i) == text { found = i }
    }
    return found
}
