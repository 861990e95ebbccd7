import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The directory holding the built products (`asynccom-server`, `asynccom-client`): next to the test bundle.
func productsDirectory() -> URL {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    // Linux: .build/<triple>/debug/asynccomPackageTests.xctest; macOS: .../asynccomPackageTests.xctest/Contents/MacOS/...
    while dir.pathComponents.count > 1 && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("asynccom-client").path) {
        dir = dir.deletingLastPathComponent()
    }
    return dir
}

func product(_ name: String) -> String { productsDirectory().appendingPathComponent(name).path }

/// The repository's `data/` directory, from this source file's location.
func dataPath(_ relative: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("data").appendingPathComponent(relative).path
}

/// A fresh scratch directory under /tmp; remove it with `removeScratchDirectory`.
func makeScratchDirectory() throws -> String {
    var template = Array("/tmp/asynccom-client-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw NSError(domain: "mkdtemp", code: Int(errno))
    }
    return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func removeScratchDirectory(_ dir: String) {
    try? FileManager.default.removeItem(atPath: dir)
}

/// Output of a finished child process.
struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var seconds: Double
}

/// Collects a pipe's bytes on a background thread (so a chatty child never blocks on a full pipe).
final class PipeCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ pipe: Pipe) {
        let handle = pipe.fileHandleForReading
        Thread {
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                self.lock.lock()
                self.data.append(chunk)
                self.lock.unlock()
            }
            self.done.signal()
        }.start()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    /// Waits for the writer's end to close, but not forever: another child spawned meanwhile may have inherited
    /// the pipe's write end (Foundation does not mark it close-on-exec) and keep it open.
    func waitForEOF(timeout: Double = 5) { _ = done.wait(timeout: .now() + timeout) }
}

/// A child process whose output is collected; `wait` kills it after a timeout so a hung child fails the test.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    private let outCollector: PipeCollector
    private let errCollector: PipeCollector
    private let start = Date()

    init(_ executable: String, _ arguments: [String], stdin: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        let input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        outCollector = PipeCollector(out)
        errCollector = PipeCollector(err)
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
    }

    func wait(timeout: Double) -> ProcessResult {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        outCollector.waitForEOF()
        errCollector.waitForEOF()
        return ProcessResult(status: process.terminationStatus, stdout: outCollector.text, stderr: errCollector.text,
                             seconds: Date().timeIntervalSince(start))
    }
}

/// Runs `executable` with `arguments` (and `stdin` text) to completion, killing it after `timeout` seconds.
func runProcess(_ executable: String, _ arguments: [String], stdin: String? = nil, timeout: Double = 60) throws -> ProcessResult {
    try ChildProcess(executable, arguments, stdin: stdin).wait(timeout: timeout)
}

/// A server process (`asynccom-server`) started on a map; its port read from its `listening on` line.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let port: UInt16
    private let stdoutCollector: PipeCollector
    private let stderrCollector: PipeCollector

    init(map: String, port: UInt16 = 0, extra: [String] = []) throws {
        process.executableURL = URL(fileURLWithPath: product("asynccom-server"))
        process.arguments = ["--map", map, "--listen", "tcp://127.0.0.1:\(port)"] + extra
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        stdoutCollector = PipeCollector(out)
        stderrCollector = PipeCollector(err)
        try process.run()
        // Poll for the `listening on tcp://127.0.0.1:<port>` line.
        let deadline = Date().addingTimeInterval(30)
        var found: UInt16?
        while found == nil && Date() < deadline && process.isRunning {
            for line in stdoutCollector.text.split(separator: "\n") where line.hasPrefix("listening on tcp://") {
                if let colon = line.lastIndex(of: ":"), let p = UInt16(line[line.index(after: colon)...]) { found = p }
            }
            if found == nil { usleep(10_000) }
        }
        guard let found else {
            process.terminate()
            throw NSError(domain: "ServerProcess", code: 1, userInfo: [NSLocalizedDescriptionKey:
                "server did not start: \(stderrCollector.text)"])
        }
        self.port = found
    }

    func kill(_ signal: Int32 = SIGKILL) {
        Glibc.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    var stderr: String { stderrCollector.text }

    deinit {
        if process.isRunning { kill() }
    }
}
