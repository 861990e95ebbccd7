import AsyncComClient
import AsyncComCore
import Foundation
import Logging

/// Collects results delivered on the engine's thread.
final class ResultLog: @unchecked Sendable {
    private let lock = NSLock()
    private var _results: [CommandResult] = []

    func append(_ r: CommandResult) {
        lock.lock()
        _results.append(r)
        lock.unlock()
    }

    var results: [CommandResult] {
        lock.lock()
        defer { lock.unlock() }
        return _results
    }
}

/// Log records kept in memory, for tests that assert what the client logs.
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var records: [(Logger.Level, String)] = []

    func append(_ level: Logger.Level, _ message: String) { lock.lock(); records.append((level, message)); lock.unlock() }

    func messages(at level: Logger.Level) -> [String] {
        lock.lock()
        defer { lock.unlock() }
        return records.filter { $0.0 == level }.map(\.1)
    }

    /// A logger at `level` that records here.
    func logger(level: Logger.Level) -> Logger {
        var logger = Logger(label: "asynccom.client.test") { _ in Handler(log: self) }
        logger.logLevel = level
        return logger
    }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            log.append(event.level, event.message.description)
        }
    }
}

extension AsyncComClient {
    /// A client whose log stays quiet unless something is badly wrong (tests provoke faults on purpose).
    static func quiet(_ configuration: ClientConfiguration) -> AsyncComClient {
        var logger = Logger(label: "asynccom.client.test")
        logger.logLevel = .critical
        return AsyncComClient(configuration: configuration, logger: logger)
    }

    /// Runs `lines` and collects every result.
    func runCollecting(_ lines: [String]) async throws -> (JobSummary, [CommandResult]) {
        let log = ResultLog()
        let summary = try await run(source: ArrayCommandSource(lines: lines), onResult: { log.append($0) })
        return (summary, log.results)
    }
}

func tcp(_ port: UInt16) -> Endpoint { .tcp(host: "127.0.0.1", port: port) }

/// Answers collected from the engine's thread, read after the job.
final class AnswerLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [AnsweredRequest] = []
    func append(_ a: AnsweredRequest) { lock.lock(); stored.append(a); lock.unlock() }
    var answers: [AnsweredRequest] { lock.lock(); defer { lock.unlock() }; return stored }
}
