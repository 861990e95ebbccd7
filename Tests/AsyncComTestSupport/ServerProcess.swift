#if canImport(Glibc)
import Glibc
#endif

/// The built `asynccom-server` executable, spawned with its stdout on a pipe and its stderr in a file.
public final class ServerProcess {
    public var pid: pid_t { child.pid }
    private var child: Reaped
    private let stdoutFD: Int32
    public let stderrPath: String
    private var stdoutBuffer: [UInt8] = []
    public var exitStatus: Int32? { child.exitStatus }

    /// Spawns the server with `arguments`. `blockedSignals` are blocked in the child's initial signal mask, as
    /// a parent that blocks them in its spawning thread (Foundation's Process, Swift concurrency threads) leaves
    /// them; by default the child starts with nothing blocked.
    public init(arguments: [String], blockedSignals: [Int32] = []) throws {
        let path = try executablePath("asynccom-server")
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
            child = Reaped(try spawnChild(path, arguments, actions: &actions, blockedSignals: blockedSignals))
        } catch {
            for fd in pipeFDs { Glibc.close(fd) }
            throw error
        }
        Glibc.close(pipeFDs[1])
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
        Glibc.close(stdoutFD)
        unlink(stderrPath)
    }

    /// The next stdout line, or nil at EOF; throws after `seconds`.
    public func stdoutLine(seconds: Double = 20) throws -> String? {
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
    public func listeningPort() throws -> UInt16 {
        guard let line = try stdoutLine() else { throw TestFailure("server exited early; stderr: \(stderr())") }
        let prefix = "listening on tcp://127.0.0.1:"
        guard line.hasPrefix(prefix), let port = UInt16(line.dropFirst(prefix.count)) else {
            throw TestFailure("unexpected first line: \(line)")
        }
        return port
    }

    public func signal(_ s: Int32) { kill(pid, s) }

    /// Waits for the process to exit; returns its exit code (128 + signal when killed by one).
    public func waitForExit(seconds: Double) throws -> Int32 {
        try child.wait(seconds: seconds) { TestFailure("server did not exit within \(seconds) s") }
    }

    public func stderr() -> String {
        (try? readText(stderrPath)) ?? ""
    }
}
