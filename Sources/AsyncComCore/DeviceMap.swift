/// The device map: `(device, command) -> (response, wait)`, loaded once and shared read-only by all reactors.
/// Lookups are O(1) and allocate nothing: they hash the command's bytes straight from the request buffer.
public final class DeviceMap: @unchecked Sendable {  // immutable after init
    /// The largest wait a map may give (one day): a longer one is surely a typo and would pin memory.
    public static let maxWaitNanos: UInt64 = 86_400 * 1_000_000_000

    /// Loads `ip:command:response:wait` lines. Throws on the first bad line, a duplicate key, or a file that
    /// cannot be read (missing, a directory, not text).
    public convenience init(contentsOfFile path: String) throws(InputFileError) {
        fatalError("contract stub: implemented by the core work")
    }

    public init(parsing data: UnsafeRawBufferPointer, fileName: String) throws(InputFileError) {
        fatalError("contract stub: implemented by the core work")
    }

    public var count: Int { fatalError("contract stub") }
    /// The largest wait in the map, in nanoseconds.
    public var largestWaitNanos: UInt64 { fatalError("contract stub") }

    /// The entry index for `(device, command)`, or -1 when the map has no such key.
    public func lookup(device: DeviceAddress, command: UnsafeRawBufferPointer) -> Int { fatalError("contract stub") }
    public func response(at index: Int) -> Int64 { fatalError("contract stub") }
    public func waitNanos(at index: Int) -> UInt64 { fatalError("contract stub") }
    /// Appends the entry's response in decimal (pre-rendered at load time).
    public func appendResponse(at index: Int, to buffer: ByteBuffer) { fatalError("contract stub") }
}

public enum WaitParser {
    /// Seconds as an integer or decimal (`1`, `0.25`, `1.5`, at most 9 decimals) to nanoseconds; nil if invalid
    /// or above `DeviceMap.maxWaitNanos`.
    public static func parseNanos(_ text: UnsafeRawBufferPointer) -> UInt64? { fatalError("contract stub") }
}
