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

/// A seeded generator, so that a failing random input can be reproduced.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
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
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attr, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, argv, environ)
        guard rc == 0 else { throw TestFailure("posix_spawn \(path): \(rc)") }
        pid = child
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
