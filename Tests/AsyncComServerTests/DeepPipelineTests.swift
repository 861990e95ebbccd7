import AsyncComCore
import AsyncComServer
import AsyncComTestSupport
import Dispatch
import Synchronization
import Testing

/// Entries whose replies are long (20-digit responses), so a few requests fill a small output high-water mark.
let deepPipelineMap = """
    10.0.0.1:big:-9223372036854775808:0
    10.0.0.1:bigw:-9223372036854775807:0.02
    10.0.0.1:small:1:0.02
    ::1:b:-9223372036854775808:0
    ::1:bw:-9223372036854775807:0.02
    """

/// A pipelined job: request lines and the exact reply each one must get.
struct PipelineJob {
    var text = ""
    var expected: [UInt64: String] = [:]

    /// `REQ id` with `count` items of `command`, whose response is `response`.
    mutating func add(id: UInt64, device: String = "10.0.0.1", command: String, count: Int, response: String) {
        text += "REQ \(id)" + String(repeating: " \(device):\(command)", count: count) + "\n"
        expected[id] = "RES \(id)" + String(repeating: " \(response)", count: count)
    }

    /// A ~1 KiB reply due at once.
    mutating func addBig(id: UInt64) { add(id: id, command: "big", count: 48, response: "-9223372036854775808") }
    /// A ~1 KiB reply due after 20 ms.
    mutating func addBigWait(id: UInt64) { add(id: id, command: "bigw", count: 48, response: "-9223372036854775807") }
    /// Small replies due after 20 ms: in-flight commands, hardly any output.
    mutating func addSmallWait(id: UInt64, items: Int) { add(id: id, command: "small", count: items, response: "1") }
}

enum Transport: CustomStringConvertible, CaseIterable {
    case tcp, unix
    var description: String { self == .tcp ? "TCP" : "Unix socket" }
}

/// Runs `job` on a server configured by `configure`: first sends what the server takes without anyone reading
/// the replies (so it stops reading with complete lines still buffered), then sends the rest from another thread
/// while this one reads every reply. A server that never resumes makes a read time out (10 s).
///
/// `mustStall`: the job is big enough that the server must have stopped reading during the first phase (its
/// output cap bound); checked, so the test cannot silently stop exercising the resume path.
func runPipeline(_ job: PipelineJob, over transport: Transport, reactors: Int = 1, mustStall: Bool = false,
                 sourceLocation: SourceLocation = #_sourceLocation,
                 configure: (inout ServerConfiguration) -> Void) throws {
    let path = "/tmp/asynccom-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    let server = try TestServer(
        map: deepPipelineMap, reactors: reactors, extraEndpoints: transport == .unix ? [.unix(path: path)] : [],
        configure: configure)
    defer { server.stop() }
    // Small socket buffers here, so that the server's unsent output (not the kernel) absorbs the replies.
    let client = transport == .unix ? try LineClient(unixPath: path) : try server.client(receiveBuffer: 65536, sendBuffer: 65536)

    let sent = try sendUntilStalled(client, job.text, stallSeconds: 0.3)
    if mustStall {
        #expect(sent < job.text.utf8.count, "the server read everything: its output cap never bound",
                sourceLocation: sourceLocation)
    }
    let rest = Array(job.text.utf8.dropFirst(sent))
    let writer = BackgroundWriter(fd: client.fd, bytes: rest)
    defer { writer.wait() }

    var got: [UInt64: String] = [:]
    while got.count < job.expected.count {
        let line = try client.line()
        let fields = line.split(separator: " ", maxSplits: 2)
        guard fields.count >= 2, fields[0] == "RES", let id = UInt64(fields[1]) else {
            Issue.record("unexpected line \(line.prefix(80))", sourceLocation: sourceLocation)
            return
        }
        #expect(got[id] == nil, "RES \(id) twice", sourceLocation: sourceLocation)
        #expect(line == job.expected[id], "RES \(id) wrong: \(line.prefix(80))", sourceLocation: sourceLocation)
        got[id] = line
    }
    writer.wait()
    #expect(writer.error == nil, "\(writer.error ?? "")", sourceLocation: sourceLocation)
    // Nothing else was pending: the connection answers the next line at once, in order.
    #expect(try client.request("PING done") == "PONG done", sourceLocation: sourceLocation)
    let s = try client.stats()
    #expect(s["requests"] == UInt64(job.expected.count), sourceLocation: sourceLocation)
    #expect(s["inflight_requests"] == 0, sourceLocation: sourceLocation)
}

/// Sends `bytes` on `fd` with blocking writes, on a thread of its own.
final class BackgroundWriter: Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let failure = Mutex<String?>(nil)
    private let finished = Atomic<Bool>(false)

    init(fd: Int32, bytes: [UInt8]) {
        _ = OwnThread { [self] in
            var offset = 0
            bytes.withUnsafeBytes { raw in
                while offset < raw.count {
                    let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                    if n < 0 {
                        if errno == EINTR { continue }
                        let e = errno
                        failure.withLock { $0 = "send: errno \(e) after \(offset) of \(raw.count) bytes" }
                        return
                    }
                    offset += n
                }
            }
            done.signal()
        }
    }

    var error: String? { failure.withLock { $0 } }

    /// Waits until the writer has returned (at most the socket's send timeout after the server stops reading).
    func wait() {
        if finished.load(ordering: .acquiring) { return }
        while done.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
            if error != nil { break }
        }
        finished.store(true, ordering: .releasing)
    }
}

@Suite("Server: deep pipelines resume after backpressure", .machineSlot(timeLimit: .minutes(2)))
struct DeepPipelineTests {
    @Test("output mark 8 KiB: 40 pipelined wait-0 REQs with ~1 KiB replies all get answered", arguments: Transport.allCases)
    func smallMarkWaitZero(transport: Transport) async throws {
        // The independent client's report: 16 replies, then nothing, with the client reading everything.
        try await blocking {
            var job = PipelineJob()
            for i in 0..<40 { job.addBig(id: UInt64(i)) }
            try runPipeline(job, over: transport) { $0.outputHighWater = 8192 }
        }
    }

    @Test("output mark 8 KiB: runs of 20 ms replies, each followed by a run of wait-0 replies", arguments: Transport.allCases)
    func smallMarkWithWaits(transport: Transport) async throws {
        // A timer firing also resumes a paused connection; the last run of wait-0 lines comes after the last
        // firing, so only a resume that answers what is buffered gets it out.
        try await blocking {
            var job = PipelineJob()
            var id: UInt64 = 0
            for _ in 0..<4 {
                for _ in 0..<20 { job.addBigWait(id: id); id += 1 }
                for _ in 0..<60 { job.addBig(id: id); id += 1 }
            }
            try runPipeline(job, over: transport) { $0.outputHighWater = 8192 }
        }
    }

    @Test("default output mark (4 MiB): 19 MiB of wait-0 replies", .machineSlot(timeLimit: .minutes(2), cpuBound: true), arguments: Transport.allCases)
    func defaultMarkWaitZero(transport: Transport) async throws {
        try await blocking {
            var job = PipelineJob()
            // 1,024 items of 6 request and 21 reply bytes each: 21.5 KiB per reply, 19 MiB in all, for 5.5 MB
            // of requests (more than the output mark and every kernel buffer can absorb).
            for i in 0..<900 {
                job.add(id: UInt64(i), device: "::1", command: "b", count: 1024, response: "-9223372036854775808")
            }
            try runPipeline(job, over: transport, mustStall: true) { _ in }
        }
    }

    @Test("default output mark (4 MiB): wait-0 and 20 ms replies interleaved", .machineSlot(timeLimit: .minutes(2), cpuBound: true), arguments: Transport.allCases)
    func defaultMarkWithWaits(transport: Transport) async throws {
        try await blocking {
            var job = PipelineJob()
            for i in 0..<900 {
                let command = i % 2 == 0 ? "b" : "bw"
                let response = i % 2 == 0 ? "-9223372036854775808" : "-9223372036854775807"
                job.add(id: UInt64(i), device: "::1", command: command, count: 1024, response: response)
            }
            try runPipeline(job, over: transport, mustStall: true) { _ in }
        }
    }

    @Test("max-inflight 64: the in-flight cap pauses and resumes, with output marks binding in between",
          arguments: Transport.allCases)
    func maxInflightResume(transport: Transport) async throws {
        // Paused by the in-flight cap; the timer delivers the due replies (emptying the in-flight count) and the
        // resume answers buffered wait-0 lines, which fill the small output mark again with no timer left to
        // wake the connection.
        try await blocking {
            var job = PipelineJob()
            var id: UInt64 = 0
            for _ in 0..<6 {
                for _ in 0..<2 { job.addSmallWait(id: id, items: 40); id += 1 }  // 80 > 64: paused until due
                for _ in 0..<20 { job.addBig(id: id); id += 1 }  // 20 KiB: pauses again on output
            }
            try runPipeline(job, over: transport) {
                $0.maxInflightCommands = 64
                $0.outputHighWater = 8192
            }
        }
    }

    @Test("max-inflight 64 with the default output mark: 20 ms requests only")
    func maxInflightDefaultMark() async throws {
        try await blocking {
            var job = PipelineJob()
            for i in 0..<300 { job.addSmallWait(id: UInt64(i), items: 16) }
            try runPipeline(job, over: .tcp) { $0.maxInflightCommands = 64 }
        }
    }
}
