import Glibc
import AsyncComCLI
import AsyncComClient
import AsyncComCore

enum Stderr {
    static func write(_ text: String) { CommandLineTool.write(text, to: STDERR_FILENO) }
}

enum Stdout {
    static func write(_ text: String) { CommandLineTool.write(text, to: STDOUT_FILENO) }
}

/// Writes per-command results, buffered. Used by the engine's loop thread during the job, then by the main task
/// once the job has completed (the job's completion orders the two), hence `@unchecked Sendable`.
final class ResultWriter: @unchecked Sendable {
    struct OpenError: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "\(path): cannot open for writing: \(reason)" }
    }

    private let fd: Int32
    private let ownsDescriptor: Bool
    private let format: OutputFormat
    private let buffer = ByteBuffer(capacity: 1 << 18)
    private let name: String
    /// The first write error; later output is dropped.
    private(set) var failure: String?

    init(path: String, format: OutputFormat) throws {
        self.format = format
        if path == "-" {
            fd = STDOUT_FILENO
            ownsDescriptor = false
            name = "<stdout>"
        } else {
            let opened = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard opened >= 0 else { throw OpenError(path: path, reason: String(cString: strerror(errno))) }
            fd = opened
            ownsDescriptor = true
            name = path
        }
    }

    func write(_ result: CommandResult) {
        switch format {
        case .text: appendText(result)
        case .jsonl: appendJSON(result)
        }
        if buffer.readableBytes >= 1 << 17 { flush() }
    }

    /// `<item> <value|unknown|failed reason>`
    private func appendText(_ r: CommandResult) {
        r.withItemBytes { item, _ in buffer.append(item) }
        switch r.outcome {
        case .value(let v):
            buffer.append(" ")
            buffer.appendDecimal(v)
        case .unknown:
            buffer.append(" unknown")
        case .failed(let reason):
            buffer.append(" failed ")
            buffer.append(string: reason)
        }
        buffer.append(byte: 0x0A)
    }

    private func appendJSON(_ r: CommandResult) {
        buffer.append("{\"line\":")
        buffer.appendDecimal(Int64(r.line))
        r.withItemBytes { bytes, commandStart in
            let split = max(0, min(bytes.count, commandStart - 1))
            buffer.append(",\"device\":")
            appendJSONString(UnsafeRawBufferPointer(rebasing: bytes[..<split]))
            buffer.append(",\"command\":")
            appendJSONString(UnsafeRawBufferPointer(rebasing: bytes[min(bytes.count, commandStart)...]))
        }
        switch r.outcome {
        case .value(let v):
            buffer.append(",\"status\":\"ok\",\"value\":")
            buffer.appendDecimal(v)
        case .unknown:
            buffer.append(",\"status\":\"unknown\"")
        case .failed(let reason):
            buffer.append(",\"status\":\"failed\",\"error\":")
            var text = reason
            text.withUTF8 { appendJSONString(UnsafeRawBufferPointer($0)) }
        }
        // Milliseconds with three decimals, from whole microseconds: integer arithmetic, no formatting calls.
        let micros = r.latencyNanos / 1000
        buffer.append(",\"latency_ms\":")
        buffer.appendDecimal(micros / 1000)
        buffer.append(byte: UInt8(ascii: "."))
        let frac = micros % 1000
        buffer.append(byte: 0x30 + UInt8(frac / 100))
        buffer.append(byte: 0x30 + UInt8(frac / 10 % 10))
        buffer.append(byte: 0x30 + UInt8(frac % 10))
        buffer.append("}\n")
    }

    /// A JSON string literal (the one escaping rule of the project: `JSONString` in Core).
    private func appendJSONString(_ bytes: UnsafeRawBufferPointer) {
        JSONString.append(bytes, to: buffer)
    }

    func flush() {
        while !buffer.isEmpty {
            if failure != nil {
                buffer.clear()
                return
            }
            let n = Glibc.write(fd, buffer.readPointer, buffer.readableBytes)
            if n > 0 {
                buffer.consume(n)
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                failure = "writing \(name): \(String(cString: strerror(n < 0 ? errno : EIO)))"
            }
        }
    }

    func close() {
        flush()
        if ownsDescriptor {
            if Glibc.close(fd) != 0 && failure == nil {
                failure = "closing \(name): \(String(cString: strerror(errno)))"
            }
        }
    }
}

/// The `\r`-updated progress line on stderr (a terminal only). Loop thread during the job, then main.
final class ProgressLine: @unchecked Sendable {
    let enabled: Bool
    private var shown = false

    init(enabled: Bool) { self.enabled = enabled }

    func show(_ p: JobProgress) {
        guard enabled else { return }
        let known = p.sourceExhausted ? "\(p.pulled)" : "\(p.pulled)+"
        var line = "\r\u{1B}[K\(p.done)/\(known) commands, \(Int(p.commandsPerSecond.rounded()))/s, \(p.inFlight) in flight"
        if p.failed > 0 { line += ", \(p.failed) failed" }
        Stderr.write(line)
        shown = true
    }

    func clear() {
        guard shown else { return }
        Stderr.write("\r\u{1B}[K")
        shown = false
    }
}

/// The human-readable summary.
enum SummaryText {
    static func ms(_ nanos: UInt64) -> String { JSONText.fixed(Double(nanos) / 1e6, decimals: 3) + " ms" }

    static func latency(_ l: LatencySummary) -> String {
        "p50 \(ms(l.p50Nanos)), p90 \(ms(l.p90Nanos)), p99 \(ms(l.p99Nanos)), max \(ms(l.maxNanos))"
    }

    static func render(_ s: JobSummary) -> String {
        var out = "sum: \(s.sum)\n"
        out += "commands: \(s.ok) ok, \(s.unknown) unknown, \(s.failed) failed, \(s.malformed) malformed\n"
        if s.interrupted {
            out += "interrupted: \(s.notAnswered) commands read were not answered; the rest of the input was not read\n"
        }
        out += "elapsed: \(JSONText.fixed(s.elapsedSeconds, decimals: 3)) s, \(JSONText.fixed(s.commandsPerSecond, decimals: 1)) commands/s\n"
        if s.latency.count > 0 { out += "latency: \(latency(s.latency))\n" }
        if s.retries > 0 || s.resends > 0 || s.reconnects > 0 || s.lateReplies > 0 || s.badReplies > 0 {
            out += "recovery: \(s.retries) retries, \(s.resends) re-sent after connection loss, \(s.reconnects) reconnects, "
            out += "\(s.lateReplies) late replies, \(s.badReplies) bad replies\n"
        }
        if let f = s.firstFailure { out += "first failure: \(f)\n" }
        for server in s.servers where server.coverageFailed {
            out += "warning: \(server.endpoint): connections reached \(server.reactorsCovered) of its \(server.reactors) reactors\n"
        }
        if s.servers.count > 1 {
            for server in s.servers {
                out += "server \(server.endpoint): \(server.ok) ok, \(server.unknown) unknown, \(server.failed) failed"
                if server.latency.count > 0 { out += "; \(latency(server.latency))" }
                out += server.upAtEnd ? "\n" : " (down at end)\n"
            }
        }
        return out
    }
}
