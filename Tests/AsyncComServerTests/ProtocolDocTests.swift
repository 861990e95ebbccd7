import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Testing

/// docs/PROTOCOL.md promises its sessions are real: replay every `>` line of every example block against a live
/// server on the seed map and compare each `<` line with what comes back, so the document cannot drift from the code.
@Suite("docs/PROTOCOL.md examples", .machineSlot(timeLimit: .minutes(1)))
struct ProtocolDocTests {
    struct Step { let send: String?; let expect: String? }

    /// Example blocks with `> ` (typed) and `< ` (received) lines; text after a run of 3+ spaces is commentary.
    static func sessions(in markdown: String) -> [[Step]] {
        var sessions: [[Step]] = []
        var current: [Step]? = nil
        for raw in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            if raw.hasPrefix("```") {
                if let steps = current, !steps.isEmpty { sessions.append(steps) }
                current = current == nil ? [] : nil
                continue
            }
            guard current != nil, raw.hasPrefix("> ") || raw.hasPrefix("< ") else { continue }
            var text = String(raw.dropFirst(2))
            if let comment = Self.commentStart(text) { text = String(text[..<comment]) }
            current!.append(raw.hasPrefix(">") ? Step(send: text, expect: nil) : Step(send: nil, expect: text))
        }
        return sessions
    }

    /// Where a run of three spaces starts: the commentary after an example line.
    static func commentStart(_ text: String) -> String.Index? {
        var run = 0
        for i in text.indices {
            run = text[i] == " " ? run + 1 : 0
            if run == 3 { return text.index(i, offsetBy: -2) }
        }
        return nil
    }

    /// `k=v` fields after the verb, in order.
    static func fields(_ line: String) -> [(String, String)] {
        line.split(separator: " ").dropFirst().compactMap { token in
            guard let eq = token.firstIndex(of: "=") else { return nil }
            return (String(token[..<eq]), String(token[token.index(after: eq)...]))
        }
    }

    /// Exact, except what the document says will differ: which reactor took the connection, and lateness.
    static func matches(_ got: String, _ expected: String) -> Bool {
        guard expected.hasPrefix("STATS ") || expected.hasPrefix("HELLO 1 ") else { return got == expected }
        let g = fields(got), e = fields(expected)
        guard got.split(separator: " ").first == expected.split(separator: " ").first,
              g.map(\.0) == e.map(\.0) else { return false }
        for ((key, gv), (_, ev)) in zip(g, e) {
            let volatile = key == "reactor" || key.hasPrefix("late_") || key.first == "r" && key.contains(".")
            if !volatile && gv != ev { return false }
        }
        return true
    }

    @Test("every worked example in PROTOCOL.md replays against a live server")
    func replay() async throws {
        try await blocking {
            let root = packageRoot()
            let sessions = Self.sessions(in: try readText(root + "/docs/PROTOCOL.md"))
            #expect(sessions.count >= 3, "the document's examples were not found")
            #expect(sessions.flatMap { $0 }.contains { $0.expect?.hasPrefix("RES ") == true })

            let map = try DeviceMap(contentsOfFile: root + "/data/seed/map.txt")
            var configuration = ServerConfiguration(map: map, endpoints: [.tcp(host: "127.0.0.1", port: 0)], reactors: 2)
            configuration.idleTimeout = 0
            let server = Server(configuration: configuration)
            let endpoints = try server.start()
            defer { server.beginShutdown(); server.waitUntilStopped() }
            guard case .tcp(_, let port) = endpoints[0] else { throw TestFailure("no tcp endpoint") }

            // The Authentication section's sessions run against a server with the document's token.
            var authConfiguration = configuration
            authConfiguration.authTokens = try Self.documentTokens()
            let authServer = Server(configuration: authConfiguration)
            let authEndpoints = try authServer.start()
            defer { authServer.beginShutdown(); authServer.waitUntilStopped() }
            guard case .tcp(_, let authPort) = authEndpoints[0] else { throw TestFailure("no tcp endpoint") }

            for steps in sessions {
                let authenticating = steps.contains { $0.send?.contains("token=") == true }
                // A fresh server for the session that shows STATS, so its counters start at zero as in the document.
                let client = try LineClient(port: authenticating ? authPort : port)
                var isolated: Server? = nil
                var target = client
                if steps.contains(where: { $0.send == "STATS" }) {
                    let s = Server(configuration: configuration)
                    let e = try s.start()
                    guard case .tcp(_, let p) = e[0] else { throw TestFailure("no tcp endpoint") }
                    isolated = s
                    target = try LineClient(port: p)
                }
                defer { isolated?.beginShutdown(); isolated?.waitUntilStopped() }
                for step in steps {
                    if let line = step.send { try target.send(line + "\n") }
                    if let expected = step.expect {
                        let got = try target.line()
                        #expect(Self.matches(got, expected), "PROTOCOL.md says \(expected)\n  the server said \(got)")
                    }
                }
            }
        }
    }

    /// The token the Authentication section's examples use.
    static func documentTokens() throws -> AuthTokens {
        var text = "docs:3f1c9a7e5b2d4c6a8e0f1a2b\n"
        return try text.withUTF8 { try AuthTokens(parsing: UnsafeRawBufferPointer($0), fileName: "PROTOCOL.md") }
    }

    @Test("the STATS/HELLO comparison is strict where the document is")
    func comparisonIsNotVacuous() {
        #expect(!Self.matches("RES 1 1 ?", "RES 1 1 1"))
        #expect(!Self.matches("STATS requests=2 late_max_us=5", "STATS requests=1 late_max_us=9"))
        #expect(Self.matches("STATS requests=1 late_max_us=5 r1.requests=1", "STATS requests=1 late_max_us=9 r1.requests=0"))
        #expect(!Self.matches("HELLO 1 max_items=8 reactor=1", "HELLO 1 max_items=1024 reactor=0"))
    }
}
