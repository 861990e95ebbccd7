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
        switch parseInPlace(line: line) {
        case .command(let device, let item, let commandStart):
            return .command(CommandEntry(device: device, item: String(decoding: item, as: UTF8.self),
                                         commandStart: commandStart, line: number))
        case .skip:
            return .skip
        case .malformed(let reason):
            return .malformed(malformedError(reason, line: line, number: number, fileName: fileName))
        }
    }

    /// One line parsed without copying: a well-formed command's item is a view into `line`.
    package enum LineInPlace {
        /// `item`: `device:command` with surrounding blanks trimmed; the command starts at `commandStart` in it.
        case command(device: DeviceAddress, item: UnsafeRawBufferPointer, commandStart: Int)
        case skip
        case malformed(ItemSyntax.ItemError)
    }

    /// Like `parse`, without building a `CommandEntry`: for readers that only need the bytes (a client that
    /// sends commands without keeping per-command results makes no String per command).
    @inline(__always)
    package static func parseInPlace(line: UnsafeRawBufferPointer) -> LineInPlace {
        // The common line, a dotted quad item with nothing around it, parses as is: nothing to trim (a blank, a
        // CR or a leading '#' all fail the fast parse, which then leaves the line to the general path).
        if let fast = ItemSyntax.parseIPv4Item(line) {
            return .command(device: fast.device, item: line, commandStart: fast.commandStart)
        }
        let item = LineFramer.trimmed(line)
        if item.isEmpty || item[0] == UInt8(ascii: "#") { return .skip }
        switch ItemSyntax.parse(item) {
        case .success(let parsed):
            return .command(device: parsed.device, item: item, commandStart: parsed.commandStart)
        case .failure(let reason):
            return .malformed(reason)
        }
    }

    /// The error of a malformed line, as `parse` reports it.
    package static func malformedError(_ reason: ItemSyntax.ItemError, line: UnsafeRawBufferPointer, number: Int,
                                       fileName: String) -> InputFileError {
        if looksLikeMapLine(line) {
            return InputFileError(file: fileName, line: number, message:
                "expected ip:command, found a device map line (ip:command:response:wait): the map goes to asynccom-server --map")
        }
        return InputFileError(file: fileName, line: number, message: "expected ip:command: \(reason)")
    }

    /// `ip:command:response:wait` (blanks around it allowed): what a device map line looks like, the likeliest
    /// file to be passed as commands by mistake.
    package static func looksLikeMapLine(_ line: UnsafeRawBufferPointer) -> Bool {
        let line = LineFramer.trimmed(line)
        let end = line.count
        guard let waitColon = lastColon(line, before: end, after: 0),
              let responseColon = lastColon(line, before: waitColon, after: 0) else { return false }
        let response = String(decoding: UnsafeRawBufferPointer(rebasing: line[(responseColon + 1)..<waitColon]), as: UTF8.self)
        let wait = String(decoding: UnsafeRawBufferPointer(rebasing: line[(waitColon + 1)..<end]), as: UTF8.self)
        guard Int64(response) != nil, let seconds = Double(wait), seconds >= 0 else { return false }
        if case .success = ItemSyntax.parse(UnsafeRawBufferPointer(rebasing: line[..<responseColon])) { return true }
        return false
    }

    private static func lastColon(_ line: UnsafeRawBufferPointer, before end: Int, after start: Int) -> Int? {
        var i = end - 1
        while i >= start {
            if line[i] == UInt8(ascii: ":") { return i }
            i -= 1
        }
        return nil
    }
}
