/// A problem in an input file (device map or commands file), located by file and 1-based line.
public struct InputFileError: Error, CustomStringConvertible, Sendable, Equatable {
    public let file: String
    /// 1-based line number; nil when the problem concerns the whole file (missing, unreadable, a directory).
    public let line: Int?
    public let message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    /// `file:line: message`, the form compilers use, so editors can jump to it.
    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}
