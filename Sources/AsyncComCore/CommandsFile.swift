/// Streaming reader for line-based input files: reads in large chunks, hands out each line in place.
public final class LineReader {
    public let name: String

    /// Opens `path`; `-` reads standard input. Errors name the file (missing, a directory, unreadable).
    public init(path: String, maxLine: Int = 1 << 20) throws(InputFileError) {
        fatalError("contract stub: implemented by the core work")
    }

    /// The next line without its terminator (CR LF or LF) and its 1-based number; nil at end of file.
    /// The bytes are valid until the next call. A line over `maxLine` bytes, a NUL byte or a read error throws.
    public func next() throws(InputFileError) -> (line: UnsafeRawBufferPointer, number: Int)? {
        fatalError("contract stub: implemented by the core work")
    }
}

/// One well-formed line of a commands file.
public struct CommandEntry: Sendable, Equatable {
    public var device: DeviceAddress
    /// `device:command` as written (surrounding blanks trimmed): what goes on the wire and into the output.
    public var item: String
    /// Offset of the command inside `item`.
    public var commandStart: Int
    public var line: Int
    public init(device: DeviceAddress, item: String, commandStart: Int, line: Int) {
        self.device = device
        self.item = item
        self.commandStart = commandStart
        self.line = line
    }
    public var command: String { String(decoding: item.utf8.dropFirst(commandStart), as: UTF8.self) }
}

public enum CommandsFile {
    public enum Line: Equatable, Sendable {
        case command(CommandEntry)
        /// Blank or `#` comment.
        case skip
        case malformed(InputFileError)
    }

    public static func parse(line: UnsafeRawBufferPointer, number: Int, fileName: String) -> Line {
        fatalError("contract stub: implemented by the core work")
    }
}
