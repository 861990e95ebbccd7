import AsyncComTestSupport
import Foundation
import Testing

/// README.md's library examples are the code of LibraryExamples.swift (so they compile), and they run.
@Suite(.machineSlot(timeLimit: .minutes(2))) struct LibraryDocTests {
    /// The regions of LibraryExamples.swift between `// README example NAME` and `// README example end`.
    static func exampleRegions() throws -> [String: String] {
        let source = try readText(packageRoot() + "/Tests/AsyncComClientTests/LibraryExamples.swift")
        var regions: [String: String] = [:]
        var name: String?
        var lines: [Substring] = []
        for line in source.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "// README example end" {
                if let name { regions[name] = lines.joined(separator: "\n") }
                name = nil
            } else if line.hasPrefix("// README example ") {
                name = String(line.dropFirst("// README example ".count))
                lines = []
            } else if name != nil {
                lines.append(line)
            }
        }
        return regions
    }

    /// The bodies of README.md's ```swift blocks.
    static func readmeSwiftBlocks() throws -> [String] {
        let readme = try readText(packageRoot() + "/README.md")
        var blocks: [String] = []
        var current: [Substring]?
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil && line == "```swift" {
                current = []
            } else if current != nil && line == "```" {
                blocks.append(current!.joined(separator: "\n"))
                current = nil
            } else if current != nil {
                current!.append(line)
            }
        }
        return blocks
    }

    @Test func readmeShowsTheExamplesVerbatim() throws {
        let regions = try Self.exampleRegions()
        #expect(Set(regions.keys) == ["run", "results", "stop", "server"])
        let blocks = try Self.readmeSwiftBlocks()
        for (name, code) in regions.sorted(by: { $0.key < $1.key }) {
            #expect(blocks.contains(code), "README.md has no ```swift block equal to the example \"\(name)\"")
        }
    }

    @Test func theExamplesRun() async throws {
        let dir = try tempDirectory()
        defer { removeTempDirectory(dir) }
        let map = dir + "/map.txt"
        // 10.0.0.3 waits 60 s: the example's `Task { }` timer runs on Swift's shared pool, which the CPU-bound unit
        // tests of a parallel run can keep busy for seconds; only the interruption may end that job early.
        try writeFile(map, "10.0.0.1:temp:21:0\n10.0.0.2:temp:19:0\n10.0.0.3:temp:30:60\n")
        let commands = dir + "/commands.txt"
        try writeFile(commands, "10.0.0.1:temp\n10.0.0.2:temp\n10.0.0.9:temp\n")
        let slow = dir + "/slow.txt"
        try writeFile(slow, "10.0.0.3:temp\n10.0.0.1:temp\n")

        let (server, endpoint) = try startServer(mapFile: map)
        defer { stopServer(server) }

        let summary = try await runJob(server: endpoint, file: commands)
        #expect(summary.sum == 40 && summary.ok == 2 && summary.unknown == 1 && summary.failed == 0)

        #expect(try await printResults(server: endpoint, file: commands) == 3)

        // 10.0.0.3 answers after 60 s: stopped after 0.2 s, one command (at least) is still unanswered.
        let stopped = try await runForAtMost(0.2, server: endpoint, file: slow)
        #expect(stopped.interrupted && stopped.notAnswered >= 1 && stopped.ok + stopped.notAnswered == 2)
    }
}
