import ArgumentParser
import AsyncComCore

#if canImport(Glibc)
import Glibc
#endif

/// Runs one of the three executables the same way: parse, run, and end with an `ExitStatus`; help and
/// `--version` on stdout; every error that ends the program on stderr as `PROGRAM: error: message`.
public enum CommandLineTool {
    /// `PROGRAM VERSION`, what `--version` prints.
    public static func version(_ program: String) -> String { "\(program) \(AsyncComVersion.string)" }

    /// A command's configuration as the three executables make it: the help discussion fitted to the terminal
    /// (`HelpText.fit`) and, on a root command, `--version`. A subcommand passes `subcommandOf:` its program.
    public static func configuration(
        _ name: String, subcommandOf program: String? = nil, abstract: String, usage: String? = nil, discussion: String,
        subcommands: [any ParsableCommand.Type] = [], defaultSubcommand: (any ParsableCommand.Type)? = nil
    ) -> CommandConfiguration {
        CommandConfiguration(
            commandName: name, abstract: abstract, usage: usage, discussion: HelpText.fit(discussion),
            version: version(program ?? name), subcommands: subcommands, defaultSubcommand: defaultSubcommand)
    }

    /// Parses the arguments and runs the (sub)command; never returns.
    public static func main<Root: ParsableCommand>(_ root: Root.Type) async -> Never {
        var command = parse(root)
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(report(error, root: root, command: type(of: command)))
        }
        exit(ExitStatus.success)
    }

    /// The same for a command without `async` work.
    public static func main<Root: ParsableCommand>(_ root: Root.Type) -> Never {
        var command = parse(root)
        do {
            try command.run()
        } catch {
            exit(report(error, root: root, command: type(of: command)))
        }
        exit(ExitStatus.success)
    }

    /// The (sub)command the arguments ask for, or the exit after help, `--version` or a usage error.
    static func parse<Root: ParsableCommand>(_ root: Root.Type) -> any ParsableCommand {
        do {
            return try root.parseAsRoot()
        } catch {
            exit(report(error, root: root, command: nil))
        }
    }

    /// Writes `PROGRAM: error: message` (the message's later lines as they are) to stderr.
    public static func printError(_ program: String, _ message: String) {
        writeStderr("\(program): error: \(message)\(message.hasSuffix("\n") ? "" : "\n")")
    }

    /// Writes `text` to stderr unbuffered, whole.
    public static func writeStderr(_ text: String) { write(text, to: STDERR_FILENO) }

    /// Writes `text` to `fd` unbuffered, whole (retrying on EINTR; dropped on any other error).
    public static func write(_ text: String, to fd: Int32) {
        var s = text
        s.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n > 0 {
                    offset += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }

    /// Prints what `error` says where it belongs and returns the exit status. `command`: the (sub)command that
    /// ran and threw, nil while parsing (the parser's own message then says which subcommand it was in).
    static func report<Root: ParsableCommand>(_ error: any Error, root: Root.Type, command: (any ParsableCommand.Type)?) -> Int32 {
        let program = root.configuration.commandName ?? "asynccom"
        var path = program
        if let command, command != root, let name = command.configuration.commandName { path += " " + name }
        let help = "Run '\(path) --help' for usage.\n"
        if let failure = error as? CommandFailure {
            printError(program, failure.message)
            if failure.status == ExitStatus.usage { writeStderr(help) }
            return failure.status
        }
        // The command has said what went wrong itself.
        if let code = error as? ExitCode { return code.rawValue }
        let code = root.exitCode(for: error)
        if code == .success {
            // --help, --version
            let message = root.fullMessage(for: error)
            if !message.isEmpty { print(message) }
            return ExitStatus.success
        }
        var message = command == nil ? root.fullMessage(for: error) : root.message(for: error)
        if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
        if message.isEmpty { message = "\(error)" }
        printError(program, message)
        guard code == .validationFailure else { return code.rawValue }
        if !message.contains("--help") { writeStderr(help) }
        return ExitStatus.usage
    }
}
