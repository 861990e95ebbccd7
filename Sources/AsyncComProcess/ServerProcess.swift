#if canImport(Glibc)
import Glibc
#endif
import AsyncComCore

/// The built `asynccom-server` executable as a child process, with its stdout on a pipe (for the `listening on`
/// lines) and its stderr in a file of its own or shared with this process. Killed by `deinit` if still running.
/// The one way the benchmark and the tests start a real server.
public final class ServerProcess {
    public enum Stderr {
        /// A temporary file, read with `stderr()` and removed with the process object.
        case file
        /// This process's own stderr.
        case inherited
    }

    public var pid: pid_t { child.pid }
    private var child: Reaped
    private let stdoutFD: Int32
    /// The file holding the server's stderr (`Stderr.file`), else nil.
    public let stderrPath: String?
    private var stdoutBuffer: [UInt8] = []
    public var exitStatus: Int32? { child.exitStatus }

    /// Spawns the server with `arguments`. `blockedSignals` are blocked in the child's initial signal mask, as
    /// a parent that blocks them in its spawning thread (Foundation's Process, Swift concurrency threads) leaves
    /// them; by default the child starts with nothing blocked.
    public init(arguments: [String], blockedSignals: [Int32] = [], stderr: Stderr = .file) throws {
        let path = try executablePath("asynccom-server")
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw ProcessFailure("pipe: \(String(cString: strerror(errno)))") }
        // Close-on-exec, so that servers spawned side by side do not inherit each other's pipes.
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        switch stderr {
        case .file:
            let path = "/tmp/asynccom-server-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).stderr"
            stderrPath = path
            posix_spawn_file_actions_addopen(&actions, 2, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        case .inherited:
            stderrPath = nil
        }
        do {
            child = Reaped(try spawnChild(path, arguments, actions: &actions, blockedSignals: blockedSignals))
        } catch {
            for fd in pipeFDs { close(fd) }
            throw error
        }
        close(pipeFDs[1])
        stdoutFD = pipeFDs[0]
    }

    /// Starts a server on `map` listening on 127.0.0.1:`port` (0: any free port) and waits until it listens;
    /// returns it with its port.
    public static func listening(map: String, port: UInt16 = 0, extra: [String] = []) throws -> (ServerProcess, UInt16) {
        let server = try ServerProcess(arguments: ["--map", map, "--listen", "tcp://127.0.0.1:\(port)"] + extra)
        return (server, try server.listeningPort())
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            _ = try? waitForExit(seconds: 10)
        }
        close(stdoutFD)
        if let stderrPath { unlink(stderrPath) }
    }

    /// The next stdout line, or nil at EOF; throws after `seconds`.
    public func stdoutLine(seconds: Double = 20) throws -> String? {
        let deadline = clockSeconds() + seconds
        while true {
            if let lf = stdoutBuffer.firstIndex(of: 0x0A) {
                let line = String(decoding: stdoutBuffer[..<lf], as: UTF8.self)
                stdoutBuffer.removeFirst(lf + 1)
                return line
            }
            let left = deadline - clockSeconds()
            if left <= 0 { throw ProcessFailure("no stdout line from asynccom-server within \(seconds) s; stderr: \(stderr())") }
            var pfd = pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, Int32(min(left, 1) * 1000)) <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(stdoutFD, &chunk, chunk.count)
            if n <= 0 { return nil }
            stdoutBuffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Reads `count` lines `listening on URL` (one per --listen, in order) and returns their endpoints.
    public func listeningEndpoints(count: Int, seconds: Double = 20) throws -> [Endpoint] {
        let deadline = clockSeconds() + seconds
        var endpoints: [Endpoint] = []
        let prefix = "listening on "
        while endpoints.count < count {
            guard let line = try stdoutLine(seconds: max(0, deadline - clockSeconds())) else {
                let status = (try? waitForExit(seconds: 5)).map { "status \($0)" } ?? "still running"
                throw ProcessFailure("asynccom-server exited before listening (\(status)); stderr: \(stderr())")
            }
            guard line.hasPrefix(prefix) else { throw ProcessFailure("unexpected asynccom-server output: \(line)") }
            endpoints.append(try Endpoint(parsing: String(line.dropFirst(prefix.count))))
        }
        return endpoints
    }

    /// Reads the `listening on tcp://127.0.0.1:PORT` line and returns the port.
    public func listeningPort() throws -> UInt16 {
        guard let line = try stdoutLine() else { throw ProcessFailure("server exited early; stderr: \(stderr())") }
        let prefix = "listening on tcp://127.0.0.1:"
        guard line.hasPrefix(prefix), let port = UInt16(line.dropFirst(prefix.count)) else {
            throw ProcessFailure("unexpected first line: \(line)")
        }
        return port
    }

    public func signal(_ s: Int32) { kill(pid, s) }

    /// Waits for the process to exit; returns its exit code (128 + signal when killed by one).
    public func waitForExit(seconds: Double) throws -> Int32 {
        try child.wait(seconds: seconds) { ProcessFailure("asynccom-server did not exit within \(seconds) s") }
    }

    /// SIGTERM, then waits: the server drains (every reply in flight is sent when due) and must exit 0.
    public func stop(seconds: Double = 120) throws {
        if exitStatus == nil { signal(SIGTERM) }
        let status = try waitForExit(seconds: seconds)
        guard status == 0 else {
            throw ProcessFailure("asynccom-server did not exit cleanly (status \(status)); stderr: \(stderr())")
        }
    }

    /// What the server wrote to stderr so far (`Stderr.file`; empty when inherited).
    public func stderr() -> String {
        guard let stderrPath else { return "" }
        return (try? readText(stderrPath)) ?? ""
    }
}
