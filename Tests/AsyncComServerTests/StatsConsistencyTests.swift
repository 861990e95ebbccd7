import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Dispatch
import Synchronization
import Testing

@Suite("Server: STATS agrees with itself", .machineSlot(timeLimit: .minutes(2)))
struct StatsConsistencyTests {
    @Test("REQ, REQ, STATS in one write: the pending replies are counted with the requests in flight")
    func sameWrite() async throws {
        // Found by an independent client: inflight_requests=2 inflight_commands=5 but pending_replies=0
        // pending_bytes=0 (the pending gauges were published only after the whole read was answered).
        try await blocking {
            let server = try TestServer(map: smallMap, reactors: 1)
            let client = try server.client()
            try client.send("REQ 10 10.0.0.3:second 10.0.0.1:fast\nREQ 11 10.0.0.1:slow 10.0.0.1:fast 10.0.0.2:fast\nSTATS\n")
            let s = try LineClient.parseStats(try client.line())
            let replyBytes = UInt64("RES 10 3 7\n".utf8.count + "RES 11 30 7 -1\n".utf8.count)
            for prefix in ["", "r0."] {
                #expect(s[prefix + "requests"] == 2)
                #expect(s[prefix + "commands"] == 5)
                #expect(s[prefix + "inflight_requests"] == 2)
                #expect(s[prefix + "inflight_commands"] == 5)
                #expect(s[prefix + "pending_replies"] == 2)
                #expect(s[prefix + "pending_bytes"] == replyBytes)
            }
            #expect(try client.line() == "RES 11 30 7 -1")
            #expect(try client.line() == "RES 10 3 7")
            let after = try client.stats()
            #expect(after["inflight_requests"] == 0 && after["pending_replies"] == 0 && after["pending_bytes"] == 0)
        }
    }

    @Test("under load, every STATS (same reactor or another) has requests, commands, in-flight and pending in step",
          arguments: [1, 2])
    func underLoad(reactors: Int) async throws {
        try await blocking {
            let server = try TestServer(map: smallMap, reactors: reactors)
            // Every request: 3 commands, a 0.3 s wait and a 15-byte reply; nothing ever closes with replies
            // pending, so stored replies are exactly the ones in flight.
            // Ids of one width (7 digits), so every reply has the same length.
            let replyLength = UInt64("RES 1000000 30 7 -1\n".utf8.count)
            let loaders = try (0..<4).map { _ in try server.client() }
            let observer = try server.client()
            let stop = Atomic<Bool>(false)
            let threads = loaders.enumerated().map { k, loader in
                let fd = loader.fd
                return OwnThread {
                    var id = 1_000_000 * (k + 1)
                    while !stop.load(ordering: .relaxed) {
                        var text = ""
                        for _ in 0..<100 {
                            text += "REQ \(id) 10.0.0.1:slow 10.0.0.1:fast 10.0.0.2:fast\n"
                            id += 1
                        }
                        var sent = 0
                        let bytes = Array(text.utf8)
                        while sent < bytes.count {
                            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                            if n <= 0 { return }
                            sent += n
                        }
                        // Drain replies so the server never stops reading this connection.
                        var sink = [UInt8](repeating: 0, count: 65536)
                        while recv(fd, &sink, sink.count, Int32(MSG_DONTWAIT)) > 0 {}
                        // A steady load (~5,000 requests/s per loader) that a debug build keeps up with: a flood
                        // (at 2 ms) made every STATS wait ~0.2 s behind it, 20 s per case.
                        usleep(20_000)
                    }
                }
            }
            defer {
                stop.store(true, ordering: .relaxed)
                for thread in threads { thread.join() }
                withExtendedLifetime(loaders) {}  // their sockets stay open until the threads using them are done
            }
            var seenInflight = 0
            // At least 100 snapshots with requests in flight, over at least a second of load (at load 15 a STATS
            // round trip takes ~0.1 s).
            let start = monotonicSeconds()
            let giveUp = start + 20
            while (seenInflight < 100 || monotonicSeconds() < start + 1) && monotonicSeconds() < giveUp {
                let s = try observer.stats()
                for prefix in [""] + (0..<reactors).map({ "r\($0)." }) {
                    let requests = s[prefix + "requests"]!, commands = s[prefix + "commands"]!
                    let inflight = s[prefix + "inflight_requests"]!, inflightCommands = s[prefix + "inflight_commands"]!
                    let replies = s[prefix + "pending_replies"]!, bytes = s[prefix + "pending_bytes"]!
                    #expect(commands == 3 * requests, "\(prefix)commands \(commands) requests \(requests)")
                    #expect(inflightCommands == 3 * inflight, "\(prefix)inflight \(inflight)/\(inflightCommands)")
                    #expect(replies == inflight, "\(prefix)pending_replies \(replies) inflight_requests \(inflight)")
                    #expect(bytes == replyLength * replies, "\(prefix)pending_bytes \(bytes) pending_replies \(replies)")
                    #expect(inflight <= requests)
                }
                if s["inflight_requests"]! > 0 { seenInflight += 1 }
            }
            #expect(seenInflight > 0, "the load never had anything in flight: the test checked nothing")
        }
    }
}
