import Foundation
import Testing
@testable import AsyncComCore

@Suite struct DeviceMapParsingTests {
    @Test func basicEntries() throws {
        let m = try map("10.0.0.1:foo:1:1\n10.0.0.1:bar:-7:0.25\n10.0.0.2:foo:+42:0\n")
        #expect(m.count == 3)
        #expect(m.largestWaitNanos == 1_000_000_000)
        let bar = lookup(m, "10.0.0.1", "bar")
        #expect(bar >= 0)
        #expect(m.response(at: bar) == -7)
        #expect(m.waitNanos(at: bar) == 250_000_000)
        #expect(m.command(at: bar) == "bar")
        #expect(m.device(at: bar) == DeviceAddress.parse("10.0.0.1"))
        let plus = lookup(m, "10.0.0.2", "foo")
        #expect(m.response(at: plus) == 42)
        let b = ByteBuffer()
        m.appendResponse(at: plus, to: b)
        #expect(b.readableString == "42")
        #expect(lookup(m, "10.0.0.2", "bar") == -1)
        #expect(lookup(m, "10.0.0.3", "foo") == -1)
        #expect(lookup(m, "10.0.0.1", "Foo") == -1)  // commands compare as bytes
        #expect(lookup(m, "10.0.0.1", "fo") == -1)
        #expect(lookup(m, "10.0.0.1", "") == -1)
        #expect(lookup(m, "10.0.0.1", String(repeating: "a", count: 65)) == -1)
    }

    @Test func commentsBlanksCRLFAndTrimming() throws {
        let text = "# header\r\n\r\n   \t\n  10.0.0.1:foo:1:1  \r\n\t# indented comment\n10.0.0.2:foo:2:2\r\n\n#last"
        let m = try map(text)
        #expect(m.count == 2)
        #expect(m.response(at: lookup(m, "10.0.0.1", "foo")) == 1)
        #expect(m.response(at: lookup(m, "10.0.0.2", "foo")) == 2)
        #expect(m.largestWaitNanos == 2_000_000_000)
        // Lines are numbered as an editor numbers them (the map keeps no line per entry: a duplicate names both).
        #expect(mapError(text + "\n10.0.0.2:foo:3:3\n10.0.0.1:foo:4:4\n")
                    == InputFileError(file: "map.txt", line: 9, message: "duplicate entry for 10.0.0.2:foo (first defined on line 6)"))
    }

    /// Only blanks are trimmed before a line's text; CRs only at its end (`LineFramer.trimmed`, as for every file).
    /// The fuzzer's reference once trimmed a leading CR too and called " CR #2" a comment (Fuzz/corpus/map).
    @Test func aCRBeforeTheTextIsContent() {
        let e = mapError(" \r#2\n10.0.0.1:foo:1:1\n")
        #expect(e?.line == 1)
        #expect(e?.message.hasPrefix("expected ip:command:response:wait") == true)
        #expect(mapError("10.0.0.1:foo:1:1\r\r\n \t#2\r\n") == nil)
    }

    @Test func lastLineWithoutNewline() throws {
        let m = try map("10.0.0.1:foo:1:1\n10.0.0.1:bar:3:0.5")
        #expect(m.response(at: lookup(m, "10.0.0.1", "bar")) == 3)
    }

    @Test func ipv6KeysAreAddresses() throws {
        let m = try map("""
            2001:db8::1:status:5:1
            [fe80::a:b]:reboot:6:2
            ::ffff:10.1.2.3:up:7:0
            ::1:x:8:0
            """)
        #expect(m.count == 4)
        for spelling in ["2001:db8::1", "[2001:db8::1]", "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:DB8:0:0::1"] {
            let i = lookup(m, spelling, "status")
            #expect(i >= 0, "\(spelling)")
            if i >= 0 { #expect(m.response(at: i) == 5) }
        }
        #expect(m.response(at: lookup(m, "fe80::a:b", "reboot")) == 6)
        #expect(m.response(at: lookup(m, "FE80:0::A:B", "reboot")) == 6)
        // An IPv4-mapped IPv6 address is the same device as the dotted quad.
        #expect(m.response(at: lookup(m, "10.1.2.3", "up")) == 7)
        #expect(m.response(at: lookup(m, "0::0:1", "x")) == 8)
        #expect(lookup(m, "2001:db8::2", "status") == -1)
    }

    @Test func responseBounds() throws {
        let m = try map("1.1.1.1:max:9223372036854775807:0\n1.1.1.1:min:-9223372036854775808:0\n1.1.1.1:z:-0:0\n1.1.1.1:lead:007:0\n")
        #expect(m.response(at: lookup(m, "1.1.1.1", "max")) == Int64.max)
        #expect(m.response(at: lookup(m, "1.1.1.1", "min")) == Int64.min)
        #expect(m.response(at: lookup(m, "1.1.1.1", "z")) == 0)
        #expect(m.response(at: lookup(m, "1.1.1.1", "lead")) == 7)
        let b = ByteBuffer()
        for cmd in ["max", "min", "z", "lead"] {
            m.appendResponse(at: lookup(m, "1.1.1.1", cmd), to: b)
            b.append(byte: 0x20)
        }
        // Rendered canonically, whatever the file's spelling.
        #expect(b.readableString == "9223372036854775807 -9223372036854775808 0 7 ")
    }

    @Test func fractionalWaits() throws {
        let m = try map("1.1.1.1:a:1:0.25\n1.1.1.1:b:1:1.000000001\n1.1.1.1:c:1:86400\n1.1.1.1:d:1:0\n1.1.1.1:e:1:0.5\n")
        #expect(m.waitNanos(at: lookup(m, "1.1.1.1", "a")) == 250_000_000)
        #expect(m.waitNanos(at: lookup(m, "1.1.1.1", "b")) == 1_000_000_001)
        #expect(m.waitNanos(at: lookup(m, "1.1.1.1", "c")) == DeviceMap.maxWaitNanos)
        #expect(m.waitNanos(at: lookup(m, "1.1.1.1", "d")) == 0)
        #expect(m.waitNanos(at: lookup(m, "1.1.1.1", "e")) == 500_000_000)
        #expect(m.largestWaitNanos == DeviceMap.maxWaitNanos)
    }

    @Test func manyEntriesAllFound() throws {
        var text = ""
        for i in 0..<5000 { text += "10.\(i / 256).\(i % 256).9:cmd\(i % 13):\(i - 2500):\(i % 3)\n" }
        for i in 0..<500 { text += "2001:db8::\(String(i, radix: 16)):c\(i):\(i):0.5\n" }
        let m = try map(text)
        #expect(m.count == 5500)
        for i in 0..<5000 {
            let index = lookup(m, "10.\(i / 256).\(i % 256).9", "cmd\(i % 13)")
            #expect(index >= 0 && m.response(at: index) == Int64(i - 2500))
            #expect(lookup(m, "10.\(i / 256).\(i % 256).9", "cmd\((i + 1) % 13)") == -1)
        }
        for i in 0..<500 {
            let index = lookup(m, "[2001:db8:0::\(String(i, radix: 16))]", "c\(i)")
            #expect(index >= 0 && m.response(at: index) == Int64(i))
        }
    }
}

@Suite struct DeviceMapErrorTests {
    /// The error for `text`, as `line: message`.
    func error(_ text: String) -> String {
        guard let e = mapError(text) else { return "no error" }
        #expect(e.file == "map.txt")
        return "\(e.line.map(String.init) ?? "-"): \(e.message)"
    }

    @Test func fieldCount() {
        #expect(error("# c\n10.0.0.1:foo:1\n") == "2: expected ip:command:response:wait, found 3 fields in '10.0.0.1:foo:1'")
        #expect(error("10.0.0.1:foo:1:1\n\n10.0.0.1\n") == "3: expected ip:command:response:wait, found 1 field in '10.0.0.1'")
        #expect(error("a:b\n") == "1: expected ip:command:response:wait, found 2 fields in 'a:b'")
    }

    @Test func badDevice() {
        let hint = "expected an IPv4 address such as 10.0.0.1 or an IPv6 address such as 2001:db8::1"
        #expect(error("10.0.0.256:foo:1:1") == "1: invalid device address '10.0.0.256': \(hint)")
        #expect(error("x\n10.0.0.01:foo:1:1") == "1: expected ip:command:response:wait, found 1 field in 'x'")
        #expect(error("10.0.0.1:a:1:1\n10.0.0.01:foo:1:1") == "2: invalid device address '10.0.0.01': \(hint)")
        #expect(error(":foo:1:1") == "1: invalid device address '': \(hint)")
        #expect(error("host.example:foo:1:1") == "1: invalid device address 'host.example': \(hint)")
        #expect(error("10.0.0.1 :foo:1:1") == "1: invalid device address '10.0.0.1 ': \(hint)")
        #expect(error("[::1:foo:1:1") == "1: invalid device address '[::1': \(hint)")
    }

    @Test func badCommand() {
        let rule = "command must be 1-64 characters of A-Z a-z 0-9 _ . -"
        #expect(error("10.0.0.1::1:1") == "1: invalid command '': \(rule)")
        #expect(error("10.0.0.1:fo o:1:1") == "1: invalid command 'fo o': \(rule)")
        #expect(error("10.0.0.1:fo/o:1:1") == "1: invalid command 'fo/o': \(rule)")
        let long = String(repeating: "c", count: 65)
        #expect(error("10.0.0.1:\(long):1:1") == "1: invalid command '\(long)': \(rule)")
        #expect(mapError("10.0.0.1:\(String(repeating: "c", count: 64)):1:1") == nil)
    }

    @Test func badResponse() {
        let whole = "expected a whole number such as 1 or -5"
        let range = "outside the signed 64-bit range -9223372036854775808 to 9223372036854775807"
        #expect(error("10.0.0.1:foo:x:1") == "1: invalid response 'x': \(whole)")
        #expect(error("10.0.0.1:foo::1") == "1: invalid response '': \(whole)")
        #expect(error("10.0.0.1:foo:-:1") == "1: invalid response '-': \(whole)")
        #expect(error("10.0.0.1:foo:1.5:1") == "1: invalid response '1.5': \(whole)")
        #expect(error("10.0.0.1:foo:--1:1") == "1: invalid response '--1': \(whole)")
        #expect(error("10.0.0.1:foo: 1:1") == "1: invalid response ' 1': \(whole)")
        #expect(error("10.0.0.1:foo:9223372036854775808:1") == "1: invalid response '9223372036854775808': \(range)")
        #expect(error("10.0.0.1:foo:-9223372036854775809:1") == "1: invalid response '-9223372036854775809': \(range)")
        #expect(error("10.0.0.1:foo:99999999999999999999999:1") == "1: invalid response '99999999999999999999999': \(range)")
    }

    @Test func badWait() {
        let expected = "expected seconds >= 0 such as 1 or 0.25"
        #expect(error("# x\n\n\n\n\n\n10.0.0.1:foo:1:1,5") == "7: invalid wait '1,5': \(expected)")
        for w in ["-1", "1e3", "", ".5", "1.", "abc", "0x10", "1.5s", "+1", " 1", "1..2", "inf", "NaN"] {
            #expect(error("10.0.0.1:foo:1:\(w)") == "1: invalid wait '\(w)': \(expected)",
                    "wait '\(w)'")
        }
        #expect(error("10.0.0.1:foo:1:1.0000000001") == "1: invalid wait '1.0000000001': at most 9 decimals (nanoseconds)")
        #expect(error("10.0.0.1:foo:1:0.0000000000") == "1: invalid wait '0.0000000000': at most 9 decimals (nanoseconds)")
        #expect(error("10.0.0.1:foo:1:86401") == "1: invalid wait '86401': at most 86400 seconds (one day)")
        #expect(error("10.0.0.1:foo:1:86400.000000001") == "1: invalid wait '86400.000000001': at most 86400 seconds (one day)")
        #expect(error("10.0.0.1:foo:1:123456789012345678901234567890") == "1: invalid wait '123456789012345678901234567890': at most 86400 seconds (one day)")
    }

    @Test func duplicates() {
        #expect(error("10.0.0.1:foo:1:1\n10.0.0.1:bar:1:1\n#\n10.0.0.1:foo:2:2\n")
                == "4: duplicate entry for 10.0.0.1:foo (first defined on line 1)")
        // Two spellings of one IPv6 address are one device.
        #expect(error("::1:foo:1:1\n[0:0::1]:foo:2:2\n") == "2: duplicate entry for [::1]:foo (first defined on line 1)")
        #expect(error("::ffff:10.0.0.1:foo:1:1\n10.0.0.1:foo:2:2\n") == "2: duplicate entry for 10.0.0.1:foo (first defined on line 1)")
        // The earliest repeated line is reported, paired with the first definition.
        var lines: [String] = []
        for i in 0..<3000 { lines.append("10.\(i / 256).\(i % 256).1:c:1:1") }
        lines[2000] = "10.0.7.1:c:1:1"   // repeats line 8
        lines[2500] = "10.0.3.1:c:1:1"   // repeats line 4, but later in the file
        lines[2700] = "10.0.7.1:c:1:1"   // a third copy
        #expect(error(lines.joined(separator: "\n")) == "2001: duplicate entry for 10.0.7.1:c (first defined on line 8)")
        // Commands differing only in case are different keys.
        #expect(mapError("10.0.0.1:foo:1:1\n10.0.0.1:FOO:1:1\n") == nil)
    }

    @Test func firstErrorWins() {
        // A duplicate before a bad line is reported, and a bad line before a duplicate.
        #expect(error("1.1.1.1:a:1:1\n1.1.1.1:a:1:1\n1.1.1.1:b:x:1\n") == "2: duplicate entry for 1.1.1.1:a (first defined on line 1)")
        #expect(error("1.1.1.1:a:1:1\n1.1.1.1:b:x:1\n1.1.1.1:a:1:1\n") == "2: invalid response 'x': expected a whole number such as 1 or -5")
        #expect(error("1.1.1.1:a:1:1\n1.1.1.1:b:1:x\n1.1.1.1:c:x:1\n").hasPrefix("2: invalid wait 'x'"))
        // IPv4 and IPv6 entries go to tables of their own, each filled in batches: the first duplicate in the
        // file is reported whichever table it is in (fuzz target "map" found line 10 reported before line 9).
        #expect(error("::1:a:1:1\n1.1.1.1:a:1:1\n::1:a:1:1\n1.1.1.1:a:1:1\n") == "3: duplicate entry for [::1]:a (first defined on line 1)")
        #expect(error("1.1.1.1:a:1:1\n::1:a:1:1\n1.1.1.1:a:1:1\n::1:a:1:1\n") == "3: duplicate entry for 1.1.1.1:a (first defined on line 1)")
        #expect(error("::1:a:1:1\n::1:a:1:1\n1.1.1.1:b:x:1\n") == "2: duplicate entry for [::1]:a (first defined on line 1)")
        // Checked left to right within a line.
        #expect(error("1.1.1.1:b/:x:y").hasPrefix("1: invalid command"))
        #expect(error("1.1.1.1:b:x:y").hasPrefix("1: invalid response"))
    }

    @Test func noEntries() {
        let message = "-: no entries: expected lines of ip:command:response:wait (blank and # lines are skipped)"
        #expect(error("") == message)
        #expect(error("\n\n   \n") == message)
        #expect(error("# only\n  # comments\r\n") == message)
    }

    @Test func nulByte() {
        var bytes = Array("10.0.0.1:foo:1:1\n10.0.0.2:foo:1:1\n".utf8)
        bytes += [0x31, 0x00, 0x0A] + Array("10.0.0.3:foo:1:1\n".utf8)
        let e = withBytes(bytes) { b -> InputFileError? in
            do throws(InputFileError) { _ = try DeviceMap(parsing: b, fileName: "bin.dat"); return nil } catch { return error }
        }
        #expect(e == InputFileError(file: "bin.dat", line: 3, message: "contains a NUL byte: not a text file"))
    }

    @Test func longFieldsAreQuotedShortAndPrintable() {
        let junk = String(repeating: "z", count: 200)
        let e = error("10.0.0.1:foo:1:\(junk)")
        #expect(e == "1: invalid wait '\(String(repeating: "z", count: 80))...': expected seconds >= 0 such as 1 or 0.25")
        #expect(error("10.0.0.1:foo:\u{7}1:1") == "1: invalid response '?1': expected a whole number such as 1 or -5")
        #expect(error("10.0.0.1:foo:é:1") == "1: invalid response '??': expected a whole number such as 1 or -5")
    }

    @Test func descriptionNamesFileAndLine() {
        #expect(mapError("10.0.0.1:foo:1:1,5", file: "map.txt")?.description
                == "map.txt:1: invalid wait '1,5': expected seconds >= 0 such as 1 or 0.25")
        #expect(mapError("")?.description.hasPrefix("map.txt: no entries") == true)
    }
}

@Suite struct DeviceMapFileTests {
    @Test func loadsFromFile() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("map.txt")
        writeFile(url, Array("10.0.0.1:foo:5:1\r\n::1:bar:6:0.5\r\n".utf8))
        let m = try DeviceMap(contentsOfFile: url.path)
        #expect(m.count == 2)
        #expect(m.response(at: lookup(m, "0::1", "bar")) == 6)
    }

    @Test func missingFile() {
        let path = "/nonexistent-\(UUID().uuidString)/map.txt"
        #expect(throws: InputFileError(file: path, line: nil, message: "no such file")) {
            _ = try DeviceMap(contentsOfFile: path)
        }
    }

    @Test func directory() {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: InputFileError(file: dir.path, line: nil, message: "is a directory, not a file")) {
            _ = try DeviceMap(contentsOfFile: dir.path)
        }
    }

    @Test(.enabled(if: geteuid() != 0, "root reads any file"))
    func unreadable() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("secret.txt")
        writeFile(url, Array("10.0.0.1:foo:5:1\n".utf8))
        chmod(url.path, 0)
        #expect(throws: InputFileError(file: url.path, line: nil, message: "permission denied")) {
            _ = try DeviceMap(contentsOfFile: url.path)
        }
    }

    @Test func binaryFile() {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("map.bin")
        writeFile(url, [0x7F, 0x45, 0x4C, 0x46, 0x00, 0x01])
        #expect(throws: InputFileError(file: url.path, line: 1, message: "contains a NUL byte: not a text file")) {
            _ = try DeviceMap(contentsOfFile: url.path)
        }
    }

    @Test func emptyFile() {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("empty.txt")
        writeFile(url, [])
        #expect(throws: InputFileError.self) { _ = try DeviceMap(contentsOfFile: url.path) }
    }
}

@Suite struct WaitParserTests {
    func nanos(_ s: String) -> UInt64? { WaitParser.parseNanos(s) }

    @Test func valid() {
        #expect(nanos("0") == 0)
        #expect(nanos("1") == 1_000_000_000)
        #expect(nanos("0.25") == 250_000_000)
        #expect(nanos("1.5") == 1_500_000_000)
        #expect(nanos("1.000000001") == 1_000_000_001)
        #expect(nanos("0.000000001") == 1)
        #expect(nanos("007") == 7_000_000_000)
        #expect(nanos("86400") == 86_400_000_000_000)
        #expect(nanos("86400.000000000") == 86_400_000_000_000)
        #expect(nanos("12.345") == 12_345_000_000)
    }

    @Test func invalid() {
        for s in ["", "-1", "+1", "1e3", ".5", "1.", "1.0000000001", "86401", "86400.000000001", "1,5", " 1", "1 ",
                  "0x1", "١"] {
            #expect(nanos(s) == nil, "'\(s)'")
        }
        #expect(withBytes("1.0000000001") { WaitParser.parse($0) } == .failure(.tooPrecise))
        #expect(withBytes("86401") { WaitParser.parse($0) } == .failure(.tooLarge))
        #expect(withBytes("1e3") { WaitParser.parse($0) } == .failure(.invalid))
    }

    @Test func exactForEveryMillisecond() {
        // No floating point: every millisecond step in the first 10 s parses exactly.
        for ms in 0..<10_000 {
            let text = "\(ms / 1000).\(String(repeating: "0", count: 3 - String(ms % 1000).count))\(ms % 1000)"
            #expect(nanos(text) == UInt64(ms) * 1_000_000, "\(text)")
        }
    }
}
