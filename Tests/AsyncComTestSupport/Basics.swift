import Foundation

#if canImport(Glibc)
// Re-exported: every test file that imports this module has the C library without its own platform import.
@_exported import Glibc
#endif

// What every test target shares: the error tests throw, a monotonic clock, polling, and files under /tmp.

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass; returns whether it held.
public func eventually(within seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonicSeconds() + seconds
    while true {
        if try condition() { return true }
        if monotonicSeconds() > deadline { return false }
        usleep(20_000)
    }
}

/// Polls `value` every 20 ms until it has not changed for `quiet` seconds; returns that value, or nil if it
/// kept changing for `seconds`. For "it stops at N": that nothing more happens can only be seen by waiting a
/// little, but only after the last change, not a fixed sleep long enough for everything before it on a
/// loaded machine.
public func settledValue<T: Equatable>(within seconds: Double = 20, quiet: Double = 0.25, _ value: () -> T) -> T? {
    let deadline = monotonicSeconds() + seconds
    var last = value()
    var since = monotonicSeconds()
    while monotonicSeconds() < deadline {
        usleep(20_000)
        let now = value()
        if now != last {
            last = now
            since = monotonicSeconds()
        } else if monotonicSeconds() - since >= quiet {
            return last
        }
    }
    return nil
}

/// Runs `body` on a thread of its own; `join()` waits for it to return. Test code that blocks (socket writes,
/// sleeps, load loops) must not run on `DispatchQueue.global()`: on Linux its threads are Swift concurrency's
/// pool too, one per core, so two blocked bodies stall every async test of a parallel run.
public final class OwnThread: Sendable {
    private let done = DispatchSemaphore(value: 0)

    public init(_ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [done] in
            body()
            done.signal()
        }
        thread.start()
    }

    public func join() {
        done.wait()
        done.signal()  // joining again returns at once
    }
}

/// The package root, from this file's path (Tests/AsyncComTestSupport/<file>).
public func packageRoot() -> String {
    var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
}

/// A path under the repository's `data/` directory.
public func dataPath(_ relative: String) -> String {
    packageRoot() + "/data/" + relative
}

// readText(_:) comes from AsyncComProcess (re-exported by ChildProcess.swift).

/// Writes `bytes` to `path` (created or truncated).
public func writeFile(_ path: String, bytes: [UInt8]) throws {
    guard let f = fopen(path, "w") else { throw TestFailure("cannot write \(path)") }
    defer { fclose(f) }
    let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    guard written == bytes.count else { throw TestFailure("short write to \(path)") }
}

public func writeFile(_ path: String, _ text: String) throws {
    try writeFile(path, bytes: Array(text.utf8))
}

/// A temporary file with `text`, removed by `remove()`.
public struct TempFile: Sendable {
    public let path: String
    public init(_ text: String, suffix: String = ".txt") throws {
        try self.init(bytes: Array(text.utf8), suffix: suffix)
    }
    public init(bytes: [UInt8], suffix: String = ".txt") throws {
        path = "/tmp/asynccom-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))\(suffix)"
        try writeFile(path, bytes: bytes)
    }
    public func remove() { unlink(path) }
}

/// A file with exactly `bytes`, removed by `remove()`.
public func tempFile(bytes: [UInt8], suffix: String = ".txt") throws -> TempFile {
    try TempFile(bytes: bytes, suffix: suffix)
}

/// A fresh empty directory under /tmp (short path: Unix socket paths hold 107 bytes); remove it with
/// `removeTempDirectory`.
public func tempDirectory() throws -> String {
    var template = Array("/tmp/asynccom-test-dir-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw TestFailure("mkdtemp: errno \(errno)")
    }
    return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Removes `dir` (made by `tempDirectory`) and everything in it.
public func removeTempDirectory(_ dir: String) {
    try? FileManager.default.removeItem(atPath: dir)
}

/// The ids of this process's threads (/proc/self/task).
public func processThreadIDs() -> [Int32] {
    guard let dir = opendir("/proc/self/task") else { return [] }
    defer { closedir(dir) }
    var ids: [Int32] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if let id = Int32(name) { ids.append(id) }
    }
    return ids
}
