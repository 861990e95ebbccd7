import Foundation
import Testing

/// What AsyncComCore may do (Package.swift's module map, docs/ARCHITECTURE.md), checked on its source: no
/// sockets, threads, clocks or libevent anywhere (`now` comes in as a parameter), and reading the input files
/// it parses only in the three readers built for it.
@Suite struct CoreBoundaryTests {
    /// Source text of every Core file without its comments.
    private func coreSources() throws -> [(name: String, code: String)] {
        let folder = packageRoot.appendingPathComponent("Sources/AsyncComCore")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".swift") }.sorted()
        #expect(names.count > 20)
        return try names.map { name in
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
            let code = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
                guard let comment = line.range(of: "//") else { return line }
                return line[..<comment.lowerBound]
            }.joined(separator: "\n")
            return (name, code)
        }
    }

    /// Swift's own Regex, not NSRegularExpression: Foundation's leaks its compiled pattern on Linux, which fails
    /// the AddressSanitizer run (LeakSanitizer, CI's scripts/sanitize.sh).
    private func calls(_ pattern: String, in code: String) -> [String] {
        let regex = try! Regex(pattern)
        return code.matches(of: regex).map { String(code[$0.range]) }
    }

    @Test func noSocketsThreadsClocksOrEventLoop() throws {
        let forbidden = #"\b(socket|connect|accept4?|bind|listen|recv|recvmsg|send|sendmsg|setsockopt|getaddrinfo|pthread_[a-z_]+|clock_gettime|gettimeofday|nanosleep|usleep|sleep|write|pipe|eventfd|epoll_[a-z_]+|event_[a-z_]+|evhttp_[a-z_]+)\("#
            + #"|\bimport (CLibevent|COpenSSL|Dispatch|Foundation)\b|\bDispatchQueue\b|\bThread\b"#
        for (name, code) in try coreSources() {
            #expect(calls(forbidden, in: code).isEmpty, "\(name): \(calls(forbidden, in: code))")
        }
    }

    @Test func inputFilesAreReadOnlyByTheirReaders() throws {
        let fileIO = #"\b(open|read|pread|lseek|fstat|mmap|posix_fadvise)\("#
        let readers: Set<String> = ["FileInput.swift", "LineReader.swift", "DeviceMapLoader.swift"]
        for (name, code) in try coreSources() where !readers.contains(name) {
            // LargeMemory maps anonymous memory (no file): allowed, as memory, not I/O.
            let found = calls(fileIO, in: code).filter { !(name == "LargeMemory.swift" && $0 == "mmap(") }
            #expect(found.isEmpty, "\(name) reads files: \(found)")
        }
    }
}
