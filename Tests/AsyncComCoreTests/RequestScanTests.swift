import Testing
@testable import AsyncComCore

/// The word-at-a-time helpers of the request path give what their byte-at-a-time references give.
@Suite struct RequestScanTests {
    /// `Wire.nextBlank` against a byte loop, from every start, on lines of bytes that sit next to the blanks
    /// (0x08, 0x0A, 0x1F, 0x21, 0x29, 0x19), NUL, high bytes and letters, with SP and HTAB at random places.
    @Test func nextBlankMatchesAByteLoop() {
        var rng = SplitMix64(seed: 7)
        let alphabet: [UInt8] = [0x00, 0x08, 0x0A, 0x19, 0x1F, 0x21, 0x29, 0x80, 0xA0, 0xFF, 0x2E, 0x3A, 0x61, 0x30]
        for _ in 0..<3_000 {
            let n = Int(rng.next() % 40)
            var line = (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            for k in 0..<n where rng.next() % 9 == 0 { line[k] = rng.next() % 2 == 0 ? 0x20 : 0x09 }
            line.withUnsafeBytes { raw in
                for start in 0...n {
                    var expected = start
                    while expected < n && line[expected] != 0x20 && line[expected] != 0x09 { expected += 1 }
                    let p = raw.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
                    #expect(Wire.nextBlank(p, from: start, count: n) == expected, "\(line) from \(start)")
                }
            }
        }
    }

    /// `CommandInterner.find(_:_:readableBefore:)` (one word for a short command) against `find(_:_:)`: every
    /// known command, and near misses (one byte changed, one byte shorter or longer, other lengths), each placed
    /// at the end of a run with 0-9 bytes before it.
    @Test func shortCommandWordsFindWhatBytesFind() {
        let known = ["a", "ab", "foo", "bar", "status", "uptime", "reboot!", "get-conf", "get-config", "x_y.z-1234567"]
        var interner = CommandInterner()
        defer { interner.deallocate() }
        for c in known { _ = c.utf8.withContiguousStorageIfAvailable { interner.intern(UnsafeRawPointer($0.baseAddress!), $0.count) } }
        var probes = Set(known)
        for c in known {
            let bytes = Array(c.utf8)
            for k in 0..<bytes.count {
                var changed = bytes
                changed[k] ^= 0x01
                probes.insert(String(decoding: changed, as: UTF8.self))
            }
            probes.insert(String(c.dropLast()))
            probes.insert(c + "s")
            probes.insert("s" + c)
        }
        probes.remove("")
        for probe in probes {
            for before in 0...9 {
                let run = Array(repeating: UInt8(ascii: "9"), count: before) + Array(probe.utf8)
                run.withUnsafeBytes { raw in
                    let p = raw.baseAddress! + before
                    let n = run.count - before
                    #expect(interner.find(p, n, readableBefore: before) == interner.find(p, n), "\(probe), \(before) before")
                }
            }
            #expect((interner.find(probe) >= 0) == known.contains(probe), "\(probe)")
        }
    }
}

extension RequestScanTests {
    /// `ServerProtocol.prefetch(line:map:)` is only a hint: on requests, on lines that stop looking like one
    /// anywhere (cut at every byte), and on random bytes, it returns, and the answers to the same lines after it
    /// are what they are without it.
    @Test func lookAheadIsOnlyAHint() throws {
        let m = try map("10.0.0.1:foo:7:1\n10.0.0.2:status:9:0\n2001:db8::1:foo:3:0\n")
        var lines = ["REQ 1 10.0.0.1:foo", "req 2 10.0.0.2:status 10.0.0.9:foo [2001:db8::1]:foo 10.0.0.1:foo",
                     "REQ 3 0.0.0.0:x", "REQ 4 10.0.0.1:foo 10.0.0.1:foo 10.0.0.1:foo 10.0.0.1:foo 10.0.0.1:foo",
                     "PING 10.0.0.1:foo", "REQ", "REQ 5", "  REQ\t6\t10.0.0.2:status  "]
        for full in Array(lines) {
            for k in 0..<full.utf8.count { lines.append(String(decoding: Array(full.utf8.prefix(k)), as: UTF8.self)) }
        }
        var rng = SplitMix64(seed: 3)
        for _ in 0..<2_000 {
            let bytes = (0..<Int(rng.next() % 48)).map { _ in UInt8(truncatingIfNeeded: rng.next() % 5 == 0 ? 0x2E : rng.next()) }
            lines.append(String(decoding: [UInt8]("REQ 7 10.".utf8) + bytes, as: UTF8.self))
        }
        for line in lines {
            let plain = ByteBuffer()
            let hinted = ByteBuffer()
            let expected = withBytes(line) { ServerProtocol.handle(line: $0, map: m, maxItems: 64, reply: plain) }
            withBytes(line) { ServerProtocol.prefetch(line: $0, map: m) }
            let outcome = withBytes(line) { ServerProtocol.handle(line: $0, map: m, maxItems: 64, reply: hinted) }
            #expect(outcome == expected, "\(line)")
            #expect(hinted.readableString == plain.readableString, "\(line)")
        }
    }
}

private extension CommandInterner {
    func find(_ text: String) -> Int {
        var s = text
        return s.withUTF8 { find(UnsafeRawPointer($0.baseAddress!), $0.count) }
    }
}
