#if canImport(Glibc)
import Glibc
#endif

@_exported import AsyncComProcess

// The package's executables as child processes in tests. Spawning, finding the built products and the real server
// (`ServerProcess`) live in AsyncComProcess, shared with asynccom-bench.

/// Output of a finished child process.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var seconds: Double
}

/// A built executable of this package as a child process: stdout and stderr go to files, stdin comes from
/// /dev/null, a text, or a pipe the test writes (`writeInput`, `closeInput`); the exit status comes from waitpid.
/// Killed by `deinit` if still running.
public final class ChildProcess {
    public enum Input {
        case null
        case text(String)
        /// A pipe whose write end the test holds: `writeInput`, `closeInput`.
        case pipe
    }

    public var pid: pid_t { child.pid }
    private var child: Reaped
    public let stdoutPath: String
    public let stderrPath: String
    private let stdinPath: String?
    private var inputFD: Int32 = -1
    private let started = monotonicSeconds()
    public var exitStatus: Int32? { child.exitStatus }

    public convenience init(_ name: String, _ arguments: [String], stdin: String? = nil) throws {
        try self.init(name, arguments, input: stdin.map { .text($0) } ?? .null)
    }

    public init(_ name: String, _ arguments: [String], input: Input) throws {
        let path = try executablePath(name)
        let stem = "/tmp/asynccom-child-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        stdoutPath = stem + ".stdout"
        stderrPath = stem + ".stderr"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipeFDs: [Int32] = [-1, -1]
        switch input {
        case .null:
            stdinPath = nil
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .text(let text):
            stdinPath = stem + ".stdin"
            try writeFile(stem + ".stdin", text)
            posix_spawn_file_actions_addopen(&actions, 0, stem + ".stdin", O_RDONLY, 0)
        case .pipe:
            stdinPath = nil
            // Close-on-exec, so that children spawned by parallel tests do not inherit the write end (and keep
            // the pipe open after `closeInput`).
            guard pipe(&pipeFDs) == 0 else { throw TestFailure("pipe: errno \(errno)") }
            for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            posix_spawn_file_actions_adddup2(&actions, pipeFDs[0], 0)
        }
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        do {
            child = Reaped(try spawnChild(path, arguments, actions: &actions))
        } catch {
            for fd in pipeFDs where fd >= 0 { close(fd) }
            throw error
        }
        if pipeFDs[0] >= 0 {
            close(pipeFDs[0])
            inputFD = pipeFDs[1]
        }
    }

    deinit {
        closeInput()
        if exitStatus == nil {
            kill(pid, SIGKILL)
            _ = try? wait(seconds: 10)
        }
        unlink(stdoutPath)
        unlink(stderrPath)
        if let stdinPath { unlink(stdinPath) }
    }

    /// Writes `bytes` to the child's stdin pipe (blocking until the child has taken them).
    public func writeInput(_ bytes: [UInt8]) throws {
        guard inputFD >= 0 else { throw TestFailure("no stdin pipe") }
        // A child that exited must fail the write with EPIPE, not kill the test runner with SIGPIPE (children
        // get SIGPIPE back at its default from `spawnChild`).
        Glibc.signal(SIGPIPE, SIG_IGN)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(inputFD, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw TestFailure("write to the child's stdin: errno \(errno)")
            }
            offset += n
        }
    }

    public func writeInput(_ text: String) throws { try writeInput(Array(text.utf8)) }

    /// Closes the child's stdin pipe: it reads EOF.
    public func closeInput() {
        if inputFD >= 0 {
            close(inputFD)
            inputFD = -1
        }
    }

    public func signal(_ s: Int32) { kill(pid, s) }

    /// Whether the process has exited (reaps it if so).
    public var hasExited: Bool {
        (try? child.wait(seconds: 0) { TestFailure("running") }) != nil
    }

    /// Waits for the exit; returns the exit code (128 + signal when killed by one). Throws after `seconds`.
    @discardableResult
    public func wait(seconds: Double) throws -> Int32 {
        try child.wait(seconds: seconds) { TestFailure("process \(pid) did not exit within \(seconds) s; stderr: \(stderr)") }
    }

    /// Waits for the exit and returns the exit code with everything the process wrote. Throws after `seconds`.
    public func result(seconds: Double) throws -> ProcessResult {
        let status = try wait(seconds: seconds)
        return ProcessResult(status: status, stdout: stdout, stderr: stderr, seconds: monotonicSeconds() - started)
    }

    public var stdout: String { (try? readText(stdoutPath)) ?? "" }
    public var stderr: String { (try? readText(stderrPath)) ?? "" }
}

/// Runs a built executable to completion (killing it and throwing after `seconds`).
public func runExecutable(_ name: String, _ arguments: [String], stdin: String? = nil,
                          seconds: Double = 60) throws -> ProcessResult {
    try ChildProcess(name, arguments, stdin: stdin).result(seconds: seconds)
}

/// A field of /proc/<pid>/status in kB (`VmRSS`, `VmHWM`), or nil when the process is gone.
public func procStatusKB(_ pid: pid_t, _ key: String) -> Int? {
    guard let text = try? readText("/proc/\(pid)/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
        return Int(line.dropFirst(key.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
    }
    return nil
}

/// Whether process `pid` has a handler installed for `signal` (the `SigCgt` mask of /proc/<pid>/status): a
/// test polls this before signalling a child, instead of sleeping until it has probably started.
public func catchesSignal(_ pid: pid_t, _ signal: Int32) -> Bool {
    guard let text = try? readText("/proc/\(pid)/status") else { return false }
    for line in text.split(separator: "\n") where line.hasPrefix("SigCgt:") {
        guard let mask = UInt64(line.dropFirst("SigCgt:".count).trimmingPrefix(while: { $0 == " " || $0 == "\t" }), radix: 16)
        else { return false }
        return mask & (1 << UInt64(signal - 1)) != 0
    }
    return false
}

/// Open descriptors of process `pid` (entries of /proc/<pid>/fd).
public func openDescriptorCount(_ pid: pid_t) -> Int {
    guard let dir = opendir("/proc/\(pid)/fd") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { n += 1 }
    }
    return n
}

/// Whether this test bundle (and so the executables built with it) runs under AddressSanitizer or
/// ThreadSanitizer, whose allocators keep freed memory in quarantine: RSS comparisons mean nothing there.
public let underSanitizer: Bool = {
    let handle = dlopen(nil, RTLD_NOW)
    defer { if let handle { dlclose(handle) } }
    return dlsym(handle, "__asan_init") != nil || dlsym(handle, "__tsan_init") != nil
}()
