import Glibc
import AsyncComCLI
import AsyncComClient
import AsyncComCore
import Logging

extension ClientCommand {
    /// Runs the job; returns the exit status.
    func execute() async -> Int32 {
        let logger = logLevel.bootstrap(label: "asynccom-client")
        let configuration: ClientConfiguration
        do {
            configuration = clientConfiguration(endpoints: try endpoints(), token: try token())
        } catch let error as InputFileError {
            return fail(error, ExitStatus.badInput)
        } catch {
            return fail(error, ExitStatus.usage)
        }
        // The options were checked by `validate`; what is left are the files (--tls-ca).
        do {
            try configuration.validate()
        } catch {
            return fail(error, ExitStatus.badInput)
        }

        let progress = ProgressLine(enabled: !quiet && isatty(STDERR_FILENO) == 1)
        let interruption = JobInterruption()
        Interrupts.install(interruption: interruption) { signal in
            let name = signal == SIGINT ? "Ctrl-C" : "SIGTERM"
            Stderr.write((progress.enabled ? "\r\u{1B}[K" : "") + "asynccom-client: \(name): stopping; the summary covers "
                + "what was answered (again to exit at once)\n")
        }
        let malformed = MalformedReport(progress: progress)
        let reportMalformed: (InputFileError) -> Void = { malformed.record($0) }

        // Input: opened (and with --strict, checked) before anything is sent.
        let source: any CommandSource
        do {
            source = try openSource(reportMalformed: reportMalformed)
        } catch {
            return fail(error, ExitStatus.badInput)
        }

        // Output.
        var writer: ResultWriter?
        if let resultsPath {
            do {
                writer = try ResultWriter(path: resultsPath, format: resultsFormat)
            } catch {
                return fail(error, ExitStatus.failure)
            }
        }

        let client = AsyncComClient(configuration: configuration, logger: logger)
        let summary: JobSummary
        do {
            summary = try await run(client: client, source: source, writer: writer, progress: progress,
                                    interruption: interruption)
        } catch ClientError.source(let error) {
            progress.clear()
            return fail(error, ExitStatus.badInput)
        } catch {
            progress.clear()
            return fail(error, ExitStatus.badInput)
        }
        progress.clear()
        malformed.finish()
        let name = commandsFile == "-" ? "<stdin>" : commandsFile
        // Every line malformed: likely the wrong file (a device map, a log), an input error rather than a job.
        let allMalformed = summary.malformed > 0 && summary.ok + summary.unknown + summary.failed + summary.notAnswered == 0
        if allMalformed {
            CommandLineTool.printError("asynccom-client", "\(name): no well-formed command: all \(summary.malformed) lines are malformed")
        } else if summary.ok + summary.unknown + summary.failed + summary.malformed + summary.notAnswered == 0 && !summary.interrupted {
            // Not an error (a filter upstream may legitimately yield nothing), but likely not what was meant.
            Stderr.write("asynccom-client: \(name): no commands (the input is empty or holds only blank and # lines)\n")
        }

        var status: Int32 = summary.allAnswered ? 0 : 1
        if summary.interrupted { status = 128 + Interrupts.firstSignal }
        if allMalformed { status = ExitStatus.badInput }
        if let writer {
            writer.flush()
            if let failure = writer.failure {
                CommandLineTool.printError("asynccom-client", failure)
                status = ExitStatus.failure
            }
            writer.close()
        }
        let text = json ? summary.json() + "\n" : SummaryText.render(summary)
        if resultsPath == "-" {
            Stderr.write(text)
        } else {
            Stdout.write(text)
        }
        return status
    }

    /// Reports an error that ends the job (`asynccom-client: error: ...`) and returns `status`.
    private func fail(_ error: any Error, _ status: Int32) -> Int32 {
        CommandLineTool.printError("asynccom-client", "\(error)")
        return status
    }

    private func run(client: AsyncComClient, source: sending any CommandSource, writer: ResultWriter?, progress: ProgressLine,
                     interruption: JobInterruption) async throws -> JobSummary {
        let onProgress: ((JobProgress) -> Void)? = progress.enabled ? { progress.show($0) } : nil
        if let writer {
            return try await client.run(source: source, onResult: { writer.write($0) }, onProgress: onProgress,
                                        interruption: interruption)
        }
        return try await client.run(source: source, onResult: nil, onProgress: onProgress, interruption: interruption)
    }

    private func openSource(reportMalformed: @escaping (InputFileError) -> Void) throws -> any CommandSource {
        guard strict else {
            return try FileCommandSource(path: commandsFile, onMalformed: reportMalformed)
        }
        if commandsFile == "-" {
            // Standard input cannot be read twice: keep it in memory, check it, then send from memory.
            let bytes = try readAllStandardInput()
            let first = FirstMalformed()
            var check = MemoryCommandSource(bytes: bytes, name: "<stdin>", onMalformed: { first.record($0) })
            while try check.next() != nil, first.error == nil {}
            if let error = first.error { throw error }
            return MemoryCommandSource(bytes: bytes, name: "<stdin>", onMalformed: reportMalformed)
        }
        let first = FirstMalformed()
        var check = try FileCommandSource(path: commandsFile, onMalformed: { first.record($0) })
        while try check.next() != nil, first.error == nil {}
        if let error = first.error { throw error }
        return try FileCommandSource(path: commandsFile, onMalformed: reportMalformed)
    }
}

/// `--strict`: remembers the first malformed line seen by a checking pass.
private final class FirstMalformed {
    var error: InputFileError?
    func record(_ e: InputFileError) {
        if error == nil { error = e }
    }
}

private func readAllStandardInput() throws -> [UInt8] {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
        if n > 0 {
            bytes.append(contentsOf: chunk[0..<n])
        } else if n == 0 {
            return bytes
        } else if errno != EINTR {
            throw InputFileError(file: "<stdin>", line: nil, message: String(cString: strerror(errno)))
        }
    }
}

/// Malformed lines on stderr, as `asynccom-client: FILE:LINE: message`: the first `shown`, then one line saying
/// how many more (a wrong file passed by mistake must not flood the terminal). Engine thread during the job,
/// then the main task.
final class MalformedReport: @unchecked Sendable {
    static let shown = 10
    private let progress: ProgressLine
    private var count = 0
    private var file = ""

    init(progress: ProgressLine) { self.progress = progress }

    func record(_ error: InputFileError) {
        count += 1
        file = error.file
        guard count <= MalformedReport.shown else { return }
        progress.clear()
        Stderr.write("asynccom-client: \(error)\n")
    }

    func finish() {
        guard count > MalformedReport.shown else { return }
        Stderr.write("asynccom-client: \(file): \(count - MalformedReport.shown) more malformed lines not shown\n")
    }
}
