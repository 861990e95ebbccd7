#if canImport(Glibc)
import Glibc
#endif

// Starting this package's executables as child processes, for the benchmark and the tests alike: one spawn
// (posix_spawn with a clean signal state), one exit wait (waitpid, polled), one place that finds the built products.

/// What goes wrong starting, reading or stopping a child process.
public struct ProcessFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Where `swift build` put the executable `name`: next to the running executable (the bench, or a test bundle's
/// runner), one folder up (inside an `.xctest` bundle directory), or next to `argv[0]`. Never a folder of another
/// build: a release bench must not pick up a debug server.
public func executablePath(_ name: String) throws -> String {
    var dirs: [String] = []
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    if n > 0 {
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        dirs.append(parentDirectory(exe))
        dirs.append(parentDirectory(parentDirectory(exe)))
    }
    if let arg0 = CommandLine.arguments.first, arg0.contains("/") {
        dirs.append(parentDirectory(arg0))
        dirs.append(parentDirectory(parentDirectory(arg0)))
    }
    for dir in dirs where access(dir + "/" + name, X_OK) == 0 {
        return dir + "/" + name
    }
    throw ProcessFailure("\(name) not found next to this executable (\(dirs.first ?? "?")): build it first (`swift build`, or `swift build -c release` for the bench)")
}

private func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return String(path[..<slash])
}

/// posix_spawn of `path` with `arguments` and the given file actions, with a clean signal state whatever the
/// parent's threads block or ignore: SIGINT, SIGTERM and SIGPIPE at their defaults, and only `blockedSignals`
/// blocked (as a parent that blocks them in its spawning thread would leave them).
public func spawnChild(_ path: String, _ arguments: [String], actions: inout posix_spawn_file_actions_t,
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
    guard rc == 0 else { throw ProcessFailure("posix_spawn \(path): \(String(cString: strerror(rc)))") }
    return child
}

/// A spawned child's pid and, once reaped, its exit code (128 + signal when killed by one).
public struct Reaped {
    public let pid: pid_t
    public private(set) var exitStatus: Int32?

    public init(_ pid: pid_t) { self.pid = pid }

    /// Polls waitpid until the child exits; throws `failure()` after `seconds`.
    public mutating func wait(seconds: Double, failure: () -> any Error) throws -> Int32 {
        if let exitStatus { return exitStatus }
        let deadline = clockSeconds() + seconds
        while true {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
                exitStatus = code
                return code
            }
            if clockSeconds() > deadline { throw failure() }
            usleep(20_000)
        }
    }
}

/// The whole file at `path` as UTF-8 text (what a child wrote to its output files).
public func readText(_ path: String) throws -> String {
    guard let f = fopen(path, "r") else { throw ProcessFailure("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}

/// CLOCK_MONOTONIC in seconds.
func clockSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
