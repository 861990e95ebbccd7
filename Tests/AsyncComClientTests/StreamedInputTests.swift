import AsyncComTestSupport
import Foundation
import Testing

/// Input that arrives over time (pipes, FIFOs, terminals) must never stop the client's event loop.
@Suite(.machineSlot(timeLimit: .minutes(3))) struct StreamedInputTests {
    func jsonObject(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// Issue 11.4: `(head -n 280000 c; sleep 3; tail -n +280001 c) | asynccom-client --timeout 1 --retries 0 -`
    /// failed ~60,000 commands the server had answered within 0.5 s: `LineReader` blocked the loop thread in
    /// read(2), so replies sat in the socket while their timers ran out (and nothing was sent or read at all
    /// while stdin had nothing to give). Here stdin delivers a first part, then pauses for longer than the
    /// timeout while those requests (0.2 s waits) are in flight, then delivers the rest.
    enum Input: CaseIterable { case stdinPipe, fifo }

    @Test(arguments: Input.allCases) func pausedInputFailsNothingAndInflatesNoLatency(input: Input) async throws {
        try await blocking {
            let dir = try tempDirectory()
            defer { removeTempDirectory(dir) }
            let map = try writeMap(in: dir, devices: 5000) { _ in "0.2" }
            let server = try TestServer(mapFile: map)
            defer { server.stop() }
            let (lines, sum) = mapCommands(devices: 5000)  // 5,000 foo (0.2 s) then 5,000 bar (no wait)
            let options = ["--server", "tcp://127.0.0.1:\(server.port)", "--timeout", "1", "--retries", "0", "--json"]
            let client: ChildProcess
            let write: (String) throws -> Void
            let close: () -> Void
            switch input {
            case .stdinPipe:
                client = try ChildProcess("asynccom-client", options + ["-"], input: .pipe)
                write = { try client.writeInput($0) }
                close = { client.closeInput() }
            case .fifo:
                let fifo = dir + "/commands.fifo"
                #expect(mkfifo(fifo, 0o600) == 0)
                client = try ChildProcess("asynccom-client", options + [fifo])
                // Opening for writing succeeds once the client has opened it for reading.
                var fd: Int32 = -1
                #expect(eventually(within: 20) {
                    fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                    return fd >= 0
                })
                _ = fcntl(fd, F_SETFL, 0)  // blocking writes from here
                write = { text in
                    var bytes = Array(text.utf8)[...]
                    while !bytes.isEmpty {
                        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                        guard n > 0 else { throw TestFailure("write to the FIFO: errno \(errno)") }
                        bytes = bytes.dropFirst(n)
                    }
                }
                close = { _ = Glibc.close(fd) }
            }
            let firstPart = 3000
            try write(lines[..<firstPart].joined(separator: "\n") + "\n")
            // The input pauses here: the client must still send what it has (and read the replies).
            let stats = try server.client()
            let sent = try eventually(within: 20) { try stats.stats()["commands"] ?? 0 >= UInt64(firstPart) }
            #expect(sent, "the client sent nothing while its input paused")
            Thread.sleep(forTimeInterval: 1.5)  // the pause goes on for longer than --timeout
            try write(lines[firstPart...].joined(separator: "\n") + "\n")
            close()
            let r = try client.result(seconds: 60)
            #expect(r.status == 0, "\(r.stderr)")
            let json = try jsonObject(r.stdout)
            #expect(json["failed"] as? Int == 0)
            #expect(json["ok"] as? Int == lines.count)
            #expect(json["sum"] as? Int == Int(sum))
            // A reply that waited in the socket during the pause would show the pause as its latency; anything over
            // the timeout would have failed.
            let latency = try #require(json["latency_ms"] as? [String: Any])
            let max = try #require(latency["max"] as? Double)
            #expect(max < 1000, "latency max \(max) ms for 200 ms waits")
        }
    }
}
