import ArgumentParser
import Logging

/// `--log-level`: swift-log's levels, lowest first. Shared by the server and the client.
public enum LogLevelOption: String, CaseIterable, ExpressibleByArgument, Sendable {
    case trace, debug, info, notice, warning, error, critical

    public var level: Logger.Level { Logger.Level(rawValue: rawValue)! }

    /// Sends every logger's messages at this level and above to stderr, and returns a logger labelled `label`.
    public func bootstrap(label: String) -> Logger {
        let level = self.level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}
