import Testing
@testable import AsyncComCore

@Suite struct ItemSyntaxTests {
    func parse(_ s: String) -> Result<(String, String), ItemSyntax.ItemError> {
        withBytes(s) { b in
            ItemSyntax.parse(b).map { (String(describing: $0.device), String(decoding: b[$0.commandStart...], as: UTF8.self)) }
        }
    }

    func error(_ s: String) -> ItemSyntax.ItemError? {
        if case .failure(let e) = parse(s) { return e }
        return nil
    }

    func ok(_ s: String) -> (String, String)? {
        if case .success(let v) = parse(s) { return v }
        return nil
    }

    @Test func valid() {
        #expect(ok("10.0.0.1:foo")! == ("10.0.0.1", "foo"))
        #expect(ok("::1:foo")! == ("::1", "foo"))
        #expect(ok("[::1]:foo")! == ("::1", "foo"))
        #expect(ok("2001:db8::7:Get_Status-2.v1")! == ("2001:db8::7", "Get_Status-2.v1"))
        #expect(ok("::ffff:1.2.3.4:x")! == ("1.2.3.4", "x"))
        #expect(ok("1.2.3.4:\(String(repeating: "a", count: 64))") != nil)
        withBytes("[fe80::1]:up") { b in
            guard case .success(let r) = ItemSyntax.parse(b) else { Issue.record("parse failed"); return }
            #expect(r.commandStart == 10)
            #expect(r.device == DeviceAddress.parse("fe80::1"))
        }
    }

    @Test func errors() {
        #expect(error("") == .missingColon)
        #expect(error("foo") == .missingColon)
        #expect(error(":foo") == .emptyDevice)
        #expect(error("1.2.3.4:") == .emptyCommand)
        #expect(error("1.2.3.4:\(String(repeating: "a", count: 65))") == .commandTooLong)
        #expect(error("1.2.3.4:a b") == .badCommand)
        #expect(error("1.2.3.4:a/b") == .badCommand)
        #expect(error("1.2.3.4:é") == .badCommand)
        #expect(error("1.2.3.4:foo:bar") == .badAddress)  // split at the last colon
        #expect(error("1.2.3:foo") == .badAddress)
        #expect(error("[1.2.3.4]:foo") == .badAddress)
        #expect(error("example.com:foo") == .badAddress)
    }

    @Test func descriptions() {
        #expect(ItemSyntax.ItemError.missingColon.description == "missing ':' between device and command")
        #expect(ItemSyntax.ItemError.badAddress.description == "invalid device address")
        #expect(ItemSyntax.ItemError.badCommand.description == "command must be 1-64 characters of A-Z a-z 0-9 _ . -")
        let all: [ItemSyntax.ItemError] = [.missingColon, .emptyDevice, .badAddress, .emptyCommand, .badCommand, .commandTooLong]
        #expect(Set(all.map(\.description)).count == all.count)
        for e in all { #expect(!e.description.contains("\n")) }
    }

    @Test func commandBytesMatchTheRule() {
        for c in 0...255 {
            let byte = UInt8(c)
            let expected = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
            #expect(ItemSyntax.isCommandByte(byte) == expected, "byte \(c)")
            #expect(withBytes([byte]) { ItemSyntax.isValidCommand($0) } == expected)
        }
        #expect(withBytes("") { ItemSyntax.isValidCommand($0) } == false)
        #expect(withBytes(String(repeating: "x", count: 64)) { ItemSyntax.isValidCommand($0) })
        #expect(!withBytes(String(repeating: "x", count: 65)) { ItemSyntax.isValidCommand($0) })
    }
}

@Suite struct DeviceAddressTests {
    @Test func ipv4Strict() {
        #expect(DeviceAddress.parse("0.0.0.0") == DeviceAddress(ipv4: 0))
        #expect(DeviceAddress.parse("255.255.255.255") == DeviceAddress(ipv4: 0xFFFF_FFFF))
        #expect(DeviceAddress.parse("10.1.2.3") == DeviceAddress(ipv4: 0x0A01_0203))
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.04", "1..2.3", ".1.2.3", "1.2.3.",
                    "1.2.3.4 ", " 1.2.3.4", "1.2.3.-4", "a.b.c.d", "1.2.3.4/24", "1234.1.1.1", "[1.2.3.4]"] {
            #expect(DeviceAddress.parse(bad) == nil, "'\(bad)'")
        }
    }

    @Test func ipv6() {
        #expect(DeviceAddress.parse("::1") == DeviceAddress(high: 0, low: 1))
        #expect(DeviceAddress.parse("[::1]") == DeviceAddress(high: 0, low: 1))
        #expect(DeviceAddress.parse("::") == DeviceAddress(high: 0, low: 0))
        #expect(DeviceAddress.parse("2001:db8::1") == DeviceAddress(high: 0x2001_0DB8_0000_0000, low: 1))
        #expect(DeviceAddress.parse("::ffff:1.2.3.4") == DeviceAddress.parse("1.2.3.4"))
        #expect(DeviceAddress.parse("1:2:3:4:5:6:7:8") == DeviceAddress(high: 0x0001_0002_0003_0004, low: 0x0005_0006_0007_0008))
        for bad in ["[::1", "::1]", "[]", "1:2:3:4:5:6:7:8:9", "fe80::1%eth0", ":::", "12345::1", "::g", "[[::1]]",
                    String(repeating: "0", count: 50) + "::1"] {
            #expect(DeviceAddress.parse(bad) == nil, "'\(bad)'")
        }
    }

    @Test func descriptions() {
        #expect(DeviceAddress.parse("10.0.0.1")!.description == "10.0.0.1")
        #expect(DeviceAddress.parse("10.0.0.1")!.isIPv4)
        #expect(DeviceAddress.parse("2001:0db8:0:0::0001")!.description == "2001:db8::1")
        #expect(!DeviceAddress.parse("::1")!.isIPv4)
        #expect(DeviceAddress.parse("::ffff:10.0.0.1")!.description == "10.0.0.1")
    }
}
