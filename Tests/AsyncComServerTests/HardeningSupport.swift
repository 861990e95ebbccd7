import AsyncComCore

#if canImport(Glibc)
import Glibc
#endif

extension LineClient {
    func send(bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try send($0) }
    }

    /// Makes the close in `deinit` an abortive one (SO_LINGER 0): the kernel sends RST and drops unsent data.
    func resetOnClose() {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
    }

    /// Reads lines until one equals `last`; returns the lines before it.
    func lines(until last: String) throws -> [String] {
        var out: [String] = []
        while true {
            let l = try line()
            if l == last { return out }
            out.append(l)
        }
    }

    /// Whether this connection still answers a PING in order, after whatever came before.
    func stillAnswers(_ token: String = "alive") throws -> Bool {
        try send("PING \(token)\n")
        return try lines(until: "PONG \(token)").allSatisfy { !$0.hasPrefix("PONG \(token)") }
    }
}

/// A field of /proc/<pid>/status in kB (`VmRSS`, `VmHWM`), or nil when the process is gone.
func procStatusKB(_ pid: pid_t, _ key: String) -> Int? {
    guard let text = try? readText("/proc/\(pid)/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
        return Int(line.dropFirst(key.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
    }
    return nil
}

/// Open descriptors of process `pid` (entries of /proc/<pid>/fd).
func openDescriptorCount(_ pid: pid_t) -> Int {
    guard let dir = opendir("/proc/\(pid)/fd") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { n += 1 }
    }
    return n
}

/// A built executable of this package run to completion: stdout and stderr go to files, the exit status comes
/// from waitpid (no run loop, no busy wait).
final class ChildProcess {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private(set) var exitStatus: Int32?

    init(_ name: String, _ arguments: [String]) throws {
        let path = try ServerProcess.executablePath(name)
        let stem = "/tmp/asynccom-child-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        stdoutPath = stem + ".stdout"
        stderrPath = stem + ".stderr"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        pid = try spawnChild(path, arguments, actions: &actions)
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            _ = try? wait(seconds: 10)
        }
        unlink(stdoutPath)
        unlink(stderrPath)
    }

    /// Waits for the exit; returns the exit code (128 + signal when killed by one). Throws after `seconds`.
    @discardableResult
    func wait(seconds: Double) throws -> Int32 {
        if let exitStatus { return exitStatus }
        let deadline = monotonicSeconds() + seconds
        while true {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
                exitStatus = code
                return code
            }
            if monotonicSeconds() > deadline {
                throw TestFailure("process \(pid) did not exit within \(seconds) s; stderr: \(stderr)")
            }
            usleep(20_000)
        }
    }

    var stdout: String { (try? readText(stdoutPath)) ?? "" }
    var stderr: String { (try? readText(stderrPath)) ?? "" }
}

/// Runs a built executable to completion.
func runExecutable(_ name: String, _ arguments: [String], seconds: Double = 60) throws -> (status: Int32, stdout: String, stderr: String) {
    let child = try ChildProcess(name, arguments)
    let status = try child.wait(seconds: seconds)
    return (status, child.stdout, child.stderr)
}

/// A file with exactly `bytes`, removed by `remove()`.
func tempFile(bytes: [UInt8], suffix: String = ".txt") throws -> TempFile {
    let file = try TempFile("", suffix: suffix)
    guard let f = fopen(file.path, "w") else { throw TestFailure("cannot write \(file.path)") }
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
    return file
}

/// A fresh empty directory under /tmp.
func tempDirectory() throws -> String {
    var template = Array("/tmp/asynccom-test-dir-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw TestFailure("mkdtemp: errno \(errno)")
    }
    return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Whether this test bundle (and so the executables built with it) runs under AddressSanitizer or
/// ThreadSanitizer, whose allocators keep freed memory in quarantine: RSS comparisons mean nothing there.
let underSanitizer: Bool = {
    let handle = dlopen(nil, RTLD_NOW)
    defer { if let handle { dlclose(handle) } }
    return dlsym(handle, "__asan_init") != nil || dlsym(handle, "__tsan_init") != nil
}()

/// LeakSanitizer suppressions compiled into the test bundle (LSan looks this weak symbol up at exit), so that
/// `swift test --sanitize=address` passes without extra options. Only leaks of the toolchain's libraries are
/// suppressed: XCTest's runner objects (the bundle's XCTest pass exits with them alive) and a weak-reference side
/// table that Foundation's `Process.run` never frees. Leaks in asynccom code still fail the run.
@_cdecl("__lsan_default_suppressions")
public func lsanDefaultSuppressions() -> UnsafePointer<CChar> {
    let text: StaticString = "leak:libXCTest.so\nleak:Foundation7ProcessC3run\nleak:Foundation.Process.run\n"
    return UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
}
