/// The `device:command` item shared by the device map, the commands file and the wire protocol.
/// Split at the LAST colon, because an IPv6 device address holds colons of its own.
public enum ItemSyntax {
    public static let maxCommandLength = 64

    public enum ItemError: Error, Equatable, Sendable, CustomStringConvertible {
        case missingColon, emptyDevice, badAddress, emptyCommand, badCommand, commandTooLong
        public var description: String {
            switch self {
            case .missingColon: return "missing ':' between device and command"
            case .emptyDevice: return "missing device before ':'"
            case .badAddress: return "invalid device address"
            case .emptyCommand: return "missing command after ':'"
            case .badCommand: return "command must be 1-64 characters of A-Z a-z 0-9 _ . -"
            case .commandTooLong: return "command longer than 64 characters"
            }
        }
    }

    /// Parses `device:command`; on success returns the device and the offset where the command starts
    /// (the command runs to the end of `item`).
    @inline(__always)
    public static func parse(_ item: UnsafeRawBufferPointer) -> Result<(device: DeviceAddress, commandStart: Int), ItemError> {
        if let fast = parseIPv4Item(item) { return .success(fast) }
        return parseAny(item)
    }

    /// `a.b.c.d:command`, the common case, in one forward pass: about half the cost of the general parser,
    /// which scans back for the last colon and then parses the address. Nil for anything else (IPv6, or a
    /// malformed item: the general parser then names the error), so it accepts exactly what the general
    /// parser accepts for a dotted quad, with the same result.
    @inline(__always)
    static func parseIPv4Item(_ item: UnsafeRawBufferPointer) -> (device: DeviceAddress, commandStart: Int)? {
        let n = item.count
        guard n >= 9, let raw = item.baseAddress else { return nil }  // the shortest is "0.0.0.0:x"
        let p = raw.assumingMemoryBound(to: UInt8.self)
        var value: UInt32 = 0
        var i = 0
        var k = 0
        while true {
            // An octet: 1 to 3 digits, no leading zero, at most 255; then its separator. Reading one past the
            // last digit is always in bounds: the item goes on (with a separator) or the octet is rejected.
            var octet = UInt32(p[i] &- 0x30)
            guard octet < 10 else { return nil }
            i &+= 1
            if octet != 0 && i < n {
                let d1 = UInt32(p[i] &- 0x30)
                if d1 < 10 {
                    octet = octet &* 10 &+ d1
                    i &+= 1
                    if i < n {
                        let d2 = UInt32(p[i] &- 0x30)
                        if d2 < 10 {
                            octet = octet &* 10 &+ d2
                            i &+= 1
                            guard octet <= 255 else { return nil }
                        }
                    }
                }
            }
            guard i < n else { return nil }
            value = value << 8 | octet
            let separator = p[i]
            i &+= 1
            if k == 3 {
                guard separator == UInt8(ascii: ":") else { return nil }
                break
            }
            guard separator == UInt8(ascii: "."), i < n else { return nil }
            k &+= 1
        }
        // No colon can follow (commands have none), so this colon was the last one, as the grammar wants.
        let commandLength = n &- i
        guard commandLength >= 1 && commandLength <= maxCommandLength && allCommandBytes(raw + i, commandLength) else {
            return nil
        }
        return (DeviceAddress(ipv4: value), i)
    }

    /// The general parser: any address form, and the precise error.
    static func parseAny(_ item: UnsafeRawBufferPointer) -> Result<(device: DeviceAddress, commandStart: Int), ItemError> {
        let n = item.count
        var colon = n - 1
        while colon >= 0 && item[colon] != UInt8(ascii: ":") { colon -= 1 }
        guard colon >= 0 else { return .failure(.missingColon) }
        guard colon > 0 else { return .failure(.emptyDevice) }
        let commandStart = colon + 1
        let commandLength = n - commandStart
        guard commandLength > 0 else { return .failure(.emptyCommand) }
        guard commandLength <= maxCommandLength else { return .failure(.commandTooLong) }
        // The command is checked before the address: it is cheaper and a typo there is the commoner mistake.
        guard allCommandBytes(item.baseAddress! + commandStart, commandLength) else { return .failure(.badCommand) }
        guard let device = DeviceAddress.parse(UnsafeRawBufferPointer(rebasing: item[0..<colon])) else {
            return .failure(.badAddress)
        }
        return .success((device, commandStart))
    }

    public static func parse(_ item: String) -> Result<(device: DeviceAddress, commandStart: Int), ItemError> {
        var s = item
        return s.withUTF8 { parse(UnsafeRawBufferPointer($0)) }
    }

    /// `[A-Za-z0-9_.-]`, 1 to `maxCommandLength` bytes.
    @inline(__always)
    public static func isValidCommand(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let n = bytes.count
        guard n > 0 && n <= maxCommandLength else { return false }
        return allCommandBytes(bytes.baseAddress!, n)
    }

    /// Whether `c` may appear in a command.
    @inline(__always)
    public static func isCommandByte(_ c: UInt8) -> Bool {
        // Bit i of the mask is set for allowed ASCII byte (64 * word + i).
        // Word 0 (0-63): '-' 45, '.' 46, '0'-'9' 48-57. Word 1 (64-127): 'A'-'Z' 65-90, '_' 95, 'a'-'z' 97-122.
        let low: UInt64 = (1 << 45) | (1 << 46) | (0x3FF << 48)
        let high: UInt64 = (0x3FF_FFFF << 1) | (1 << 31) | (0x3FF_FFFF << 33)
        guard c < 128 else { return false }
        let word = c < 64 ? low : high
        return (word >> UInt64(c & 63)) & 1 == 1
    }

    @inline(__always)
    static func allCommandBytes(_ p: UnsafeRawPointer, _ n: Int) -> Bool {
        var i = 0
        while i < n {
            if !isCommandByte(p.load(fromByteOffset: i, as: UInt8.self)) { return false }
            i += 1
        }
        return true
    }
}
