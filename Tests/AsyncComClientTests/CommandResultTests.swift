import Testing
@testable import AsyncComClient
@testable import AsyncComCore

/// Results built from wire bytes keep short items inline and long ones as a `String`; both must read the same.
@Suite struct CommandResultTests {
    private func entry(_ item: String, line: Int) -> CommandEntry {
        var text = item
        let parsed = text.withUTF8 { CommandsFile.parse(line: UnsafeRawBufferPointer($0), number: line, fileName: "f") }
        guard case .command(let entry) = parsed else { fatalError("not a command: \(item)") }
        return entry
    }

    private func result(item: String, line: Int = 7, outcome: CommandOutcome = .value(42)) -> CommandResult {
        let entry = entry(item, line: line)
        var bytes = Array(item.utf8)
        return bytes.withUnsafeMutableBytes { raw in
            CommandResult(sequence: 3, item: UnsafeRawBufferPointer(raw), commandStart: entry.commandStart, device: entry.device,
                          line: line, outcome: outcome, server: .tcp(host: "127.0.0.1", port: 5557), latencyNanos: 9)
        }
    }

    private func expected(item: String, line: Int = 7, outcome: CommandOutcome = .value(42)) -> CommandResult {
        CommandResult(sequence: 3, entry: entry(item, line: line), outcome: outcome, server: .tcp(host: "127.0.0.1", port: 5557), latencyNanos: 9)
    }

    @Test(arguments: [
        "10.0.0.1:foo",                                           // inline
        "192.168.100.200:show_interfaces",                        // 31 bytes: inline
        "192.168.100.200:show_interfaces_",                       // 32 bytes: the inline limit
        "192.168.100.200:show_interfaces_b",                      // 33 bytes: a String
        "[2001:db8::1]:" + String(repeating: "c", count: 64),     // the longest shape
    ])
    func readsLikeAnEntry(item: String) {
        let r = result(item: item)
        let e = expected(item: item)
        #expect(r == e)
        #expect(r.entry.item == item)
        #expect(r.entry == e.entry)
        #expect(r.entry.command == e.entry.command)
        #expect(r.line == 7)
        #expect(r.device == e.entry.device)
        r.withItemBytes { bytes, commandStart in
            #expect(String(decoding: bytes, as: UTF8.self) == item)
            #expect(commandStart == e.entry.commandStart)
        }
    }

    @Test func differentItemsDiffer() {
        #expect(result(item: "10.0.0.1:foo") != result(item: "10.0.0.1:bar"))
        #expect(result(item: "10.0.0.1:foo") != result(item: "10.0.0.1:foo", line: 8))
        #expect(result(item: "10.0.0.1:foo") != result(item: "10.0.0.1:foo", outcome: .unknown))
    }

    @Test func settingTheEntryReplacesTheInlineItem() {
        var r = result(item: "10.0.0.1:foo")
        var entry = r.entry
        entry.line = 99
        r.entry = entry
        #expect(r.line == 99)
        #expect(r.entry.item == "10.0.0.1:foo")
    }
}
