import AsyncComCore

#if canImport(Glibc)
import Glibc
#endif

/// The built `asynccom-server` executable, spawned with its stdout on a pipe and its stderr in a file.
final class ServerProcess {
    let pid: pid_t
    private let stdoutFD: Int32
    let stderrPath: String
    private var stdoutBuffer: [UInt8] = []
    private(set) var exitStatus: Int32?

    /// Where `swift build` put the executable `name`: next to the test bundle (both `.build/debug` layouts), or
    /// in the package's `.build/debug`.
    static func executablePath(_ name: String = "asynccom-server") throws -> String {
        var dirs: [String] = []
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 {
            let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            dirs.append(parent(exe))
            dirs.append(parent(parent(exe)))  // inside an .xctest bundle directory
        }
        if let arg0 = CommandLine.arguments.first, arg0.contains("/") {
            dirs.append(parent(arg0))
            dirs.append(parent(parent(arg0)))
        }
        dirs.append(packageRoot() + "/.build/debug")
        for dir in dirs where access(dir + "/" + name, X_OK) == 0 {
            return dir + "/" + name
        }
        throw TestFailure("\(name) not found in \(dirs); run `swift build` first")
    }

    private static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return String(path[..<slash])
    }

    /// Spawns the server with `arguments`. `blockedSignals` are blocked in the child's initial signal mask, as
    /// a parent that blocks them in its spawning thread (Foundation's Process, Swift concurrency threads) leaves
    /// them; by default the child starts with nothing blocked.
    init(arguments: [String], blockedSignals: [Int32] = []) throws {
        let path = try Self.executablePath()
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw TestFailure("pipe: errno \(errno)") }
        // Close-on-exec, so that servers spawned by parallel tests do not inherit each other's pipes.
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        stderrPath = "/tmp/asynccom-server-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).stderr"

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        do {
            pid = try spawnChild(path, arguments, actions: &actions, blockedSignals: blockedSignals)
        } catch {
            for fd in pipeFDs { Glibc.close(fd) }
            throw error
        }
        Glibc.close(pipeFDs[1])
        stdoutFD = pipeFDs[0]
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            _ = try? waitForExit(seconds: 10)
        }
        Glibc.close(stdoutFD)
        unlink(stderrPath)
    }

    /// The next stdout line, or nil at EOF; throws after `seconds`.
    func stdoutLine(seconds: Double = 20) throws -> String? {
        let deadline = monotonicSeconds() + seconds
        while true {
            if let lf = stdoutBuffer.firstIndex(of: 0x0A) {
                let line = String(decoding: stdoutBuffer[..<lf], as: UTF8.self)
                stdoutBuffer.removeFirst(lf + 1)
                return line
            }
            let left = deadline - monotonicSeconds()
            if left <= 0 { throw TestFailure("no stdout line from the server; stderr: \(stderr())") }
            var pfd = pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, Int32(min(left, 1) * 1000)) <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(stdoutFD, &chunk, chunk.count)
            if n <= 0 { return nil }
            stdoutBuffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Reads the `listening on tcp://127.0.0.1:PORT` line and returns the port.
    func listeningPort() throws -> UInt16 {
        guard let line = try stdoutLine() else { throw TestFailure("server exited early; stderr: \(stderr())") }
        let prefix = "listening on tcp://127.0.0.1:"
        guard line.hasPrefix(prefix), let port = UInt16(line.dropFirst(prefix.count)) else {
            throw TestFailure("unexpected first line: \(line)")
        }
        return port
    }

    func signal(_ s: Int32) { kill(pid, s) }

    /// Waits for the process to exit; returns its exit code (128 + signal when killed by one).
    func waitForExit(seconds: Double) throws -> Int32 {
        if let exitStatus { return exitStatus }
        let deadline = monotonicSeconds() + seconds
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
                exitStatus = code
                return code
            }
            if monotonicSeconds() > deadline { throw TestFailure("server did not exit within \(seconds) s") }
            usleep(20_000)
        }
    }

    func stderr() -> String {
        (try? readText(stderrPath)) ?? ""
    }
}

/// A temporary file with `text`, removed by `remove()`.
struct TempFile {
    let path: String
    init(_ text: String, suffix: String = ".txt") throws {
        path = "/tmp/asynccom-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))\(suffix)"
        guard let f = fopen(path, "w") else { throw TestFailure("cannot create \(path)") }
        fputs(text, f)
        fclose(f)
    }
    func remove() { unlink(path) }
}

/// posix_spawn of `path` with `arguments` and the given file actions, with a clean signal state whatever the
/// test runner's threads block or ignore: SIGINT, SIGTERM and SIGPIPE at their defaults, and only
/// `blockedSignals` blocked (as a parent that blocks them in its spawning thread would leave them).
func spawnChild(_ path: String, _ arguments: [String], actions: inout posix_spawn_file_actions_t,
                blockedSignals: [Int32] = []) throws -> pid_t {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var mask = sigset_t()
    sigemptyset(&mask)
    for s in blockedSignals { sigaddset(&mask, s) }
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
    return child
}
