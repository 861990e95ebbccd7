/// The exit statuses of asynccom-server, asynccom-client and asynccom-bench: one scheme for all three
/// (README "Exit status"; each `--help` ends with its own line of it).
public enum ExitStatus {
    /// Done: the server shut down cleanly, every command was answered, every benchmark run passed.
    public static let success: Int32 = 0
    /// Failed at run time: an endpoint cannot be bound, the open-file limit is too low, a command failed, writing
    /// the results failed, a benchmark run failed.
    public static let failure: Int32 = 1
    /// A bad input file: a file the command reads (device map, token file, certificate or key, commands file) is
    /// missing, unreadable or malformed.
    public static let badInput: Int32 = 2
    /// A usage error: an unknown or malformed option, a value out of range, options that do not go together
    /// (protected mode included). EX_USAGE of sysexits.h, swift-argument-parser's own.
    public static let usage: Int32 = 64
}

/// An error that ends the command with `status`, reported as `PROGRAM: error: message`.
public struct CommandFailure: Error, CustomStringConvertible {
    public let status: Int32
    public let message: String
    public var description: String { message }

    public init(status: Int32, _ message: String) {
        self.status = status
        self.message = message
    }

    public static func failure(_ message: String) -> CommandFailure { CommandFailure(status: ExitStatus.failure, message) }
    public static func badInput(_ message: String) -> CommandFailure { CommandFailure(status: ExitStatus.badInput, message) }
    public static func usage(_ message: String) -> CommandFailure { CommandFailure(status: ExitStatus.usage, message) }
}
