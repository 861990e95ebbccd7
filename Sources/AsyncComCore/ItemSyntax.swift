/// The `device:command` item shared by the device map, the commands file and the wire protocol.
/// Split at the LAST colon, because an IPv6 device address holds colons of its own.
public enum ItemSyntax {
    public static let maxCommandLength = 64

    public enum ItemError: Error, Equatable, Sendable, CustomStringConvertible {
        case missingColon, emptyDevice, badAddress, emptyCommand, badCommand, commandTooLong
        public var description: String { fatalError("contract stub: implemented by the core work") }
    }

    /// Parses `device:command`; on success returns the device and the offset where the command starts
    /// (the command runs to the end of `item`).
    public static func parse(_ item: UnsafeRawBufferPointer) -> Result<(device: DeviceAddress, commandStart: Int), ItemError> {
        fatalError("contract stub: implemented by the core work")
    }

    /// `[A-Za-z0-9_.-]`, 1 to `maxCommandLength` bytes.
    public static func isValidCommand(_ bytes: UnsafeRawBufferPointer) -> Bool {
        fatalError("contract stub: implemented by the core work")
    }
}
