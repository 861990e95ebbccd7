import Glibc

/// A device's IP address in binary form, so that every textual spelling of one address is one device
/// (`::1` and `0:0::1`; `1.2.3.4` and `::ffff:1.2.3.4`). IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`).
public struct DeviceAddress: Hashable, Sendable, CustomStringConvertible {
    /// The 128-bit address, big-endian halves.
    public var high: UInt64
    public var low: UInt64

    @inline(__always) public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }

    @inline(__always) public init(ipv4 value: UInt32) {
        self.high = 0
        self.low = 0x0000_FFFF_0000_0000 | UInt64(value)
    }

    public var isIPv4: Bool { high == 0 && (low >> 32) == 0x0000_FFFF }

    /// Parses an IPv4 dotted quad or an IPv6 address (optionally in brackets). Nil when it is neither.
    @inline(__always)
    public static func parse(_ text: UnsafeRawBufferPointer) -> DeviceAddress? {
        if let v4 = parseIPv4(text) { return DeviceAddress(ipv4: v4) }
        return parseIPv6(text)
    }

    public static func parse(_ text: String) -> DeviceAddress? {
        var s = text
        return s.withUTF8 { parse(UnsafeRawBufferPointer($0)) }
    }

    /// Strict dotted quad: four decimal octets 0-255, no leading zeros (they mean octal to some tools).
    @inline(__always)
    public static func parseIPv4(_ text: UnsafeRawBufferPointer) -> UInt32? {
        let n = text.count
        guard n >= 7 && n <= 15 else { return nil }
        var value: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var dots = 0
        var i = 0
        while i < n {
            let c = text[i]
            if c == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                value = (value << 8) | octet
                octet = 0
                digits = 0
                dots += 1
            } else if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                if digits > 0 && octet == 0 { return nil }  // leading zero
                octet = octet * 10 + UInt32(c &- UInt8(ascii: "0"))
                digits += 1
                guard octet <= 255 else { return nil }
            } else {
                return nil
            }
            i += 1
        }
        guard dots == 3, digits > 0 else { return nil }
        return (value << 8) | octet
    }

    public static func parseIPv6(_ text: UnsafeRawBufferPointer) -> DeviceAddress? {
        var start = 0
        var end = text.count
        if end >= 2 && text[0] == UInt8(ascii: "[") && text[end - 1] == UInt8(ascii: "]") {
            start = 1
            end -= 1
        }
        let len = end - start
        // INET6_ADDRSTRLEN is 46 including the NUL; anything longer is not an address.
        guard len >= 2 && len < 46 else { return nil }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 48) { cstr -> DeviceAddress? in
            for i in 0..<len {
                let c = text[start + i]
                guard c != 0 else { return nil }
                cstr[i] = CChar(bitPattern: c)
            }
            cstr[len] = 0
            var addr = in6_addr()
            guard inet_pton(AF_INET6, cstr.baseAddress!, &addr) == 1 else { return nil }
            return withUnsafeBytes(of: &addr) { raw -> DeviceAddress in
                var hi: UInt64 = 0
                var lo: UInt64 = 0
                for i in 0..<8 { hi = (hi << 8) | UInt64(raw[i]) }
                for i in 8..<16 { lo = (lo << 8) | UInt64(raw[i]) }
                return DeviceAddress(high: hi, low: lo)
            }
        }
    }

    public var description: String {
        if isIPv4 {
            let v = UInt32(truncatingIfNeeded: low)
            return "\(v >> 24).\((v >> 16) & 0xFF).\((v >> 8) & 0xFF).\(v & 0xFF)"
        }
        var addr = in6_addr()
        withUnsafeMutableBytes(of: &addr) { raw in
            for i in 0..<8 { raw[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i))) }
            for i in 0..<8 { raw[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i))) }
        }
        var buf = [CChar](repeating: 0, count: 64)
        guard inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count)) != nil else { return "?" }
        let length = buf.firstIndex(of: 0) ?? buf.count
        return String(decoding: buf[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
