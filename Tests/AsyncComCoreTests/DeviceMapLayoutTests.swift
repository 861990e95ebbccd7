import Testing
@testable import AsyncComCore

/// The map packs responses and waits into its hash slots when they fit and falls back to the entry when they do
/// not; the server's request path reads slots in groups. These tests pin the answers on both sides of every
/// boundary, through the same path the server takes (`ServerProtocol.handle`).
@Suite struct DeviceMapLayoutTests {
    func reply(_ map: DeviceMap, _ line: String) -> String {
        let out = ByteBuffer()
        _ = withBytes(line) { ServerProtocol.handle(line: $0, map: map, maxItems: 4096, reply: out) }
        return out.readableString
    }

    @Test func responsesOnEitherSideOfTheSlotWidth() throws {
        let values: [Int64] = [0, 1, -1, (1 << 47) - 1, -(1 << 47), 1 << 47, -(1 << 47) - 1, Int64.max, Int64.min]
        var text = ""
        for (i, v) in values.enumerated() { text += "10.0.0.\(i):r:\(v):0.5\n" }
        let m = try map(text)
        var line = "REQ 1"
        for i in values.indices { line += " 10.0.0.\(i):r" }
        #expect(reply(m, line) == "RES 1 " + values.map(String.init).joined(separator: " ") + "\n")
        for (i, v) in values.enumerated() {
            let index = lookup(m, "10.0.0.\(i)", "r")
            #expect(m.response(at: index) == v)
            #expect(m.waitNanos(at: index) == 500_000_000)
        }
    }

    @Test func moreDistinctWaitsThanSlotsCanNumber() throws {
        // 70,000 distinct waits: the first 65,535 are numbered, the rest are read from their entries.
        let n = 70_000
        var text = ""
        text.reserveCapacity(n * 32)
        for i in 0..<n { text += "10.\(i >> 16).\((i >> 8) & 255).\(i & 255):w:\(i):0.\(String(format6(i + 1)))\n" }
        let m = try map(text)
        #expect(m.count == n)
        for i in [0, 1, 65_533, 65_534, 65_535, 65_536, n - 1] {
            let device = "10.\(i >> 16).\((i >> 8) & 255).\(i & 255)"
            let wait = UInt64(i + 1) * 1000
            #expect(m.waitNanos(at: lookup(m, device, "w")) == wait)
            let out = ByteBuffer()
            let outcome = withBytes("REQ 9 \(device):w 11.0.0.1:w") {
                ServerProtocol.handle(line: $0, map: m, maxItems: 16, reply: out)
            }
            #expect(outcome == .request(id: 9, waitNanos: wait, commands: 2, unknown: 1))
            #expect(out.readableString == "RES 9 \(i) ?\n")
        }
    }

    /// `i` as six digits: `0.000123` seconds = 123 µs.
    func format6(_ i: Int) -> String {
        let s = String(i)
        return String(repeating: "0", count: max(0, 6 - s.count)) + s
    }

    @Test func manyDistinctCommands() throws {
        // Enough commands to grow the command table many times; each device has its own.
        var text = ""
        for i in 0..<3000 { text += "10.0.\(i >> 8).\(i & 255):cmd_\(i):\(i):0\n" }
        let m = try map(text)
        for i in stride(from: 0, to: 3000, by: 7) {
            let device = "10.0.\(i >> 8).\(i & 255)"
            #expect(m.command(at: lookup(m, device, "cmd_\(i)")) == "cmd_\(i)")
            #expect(reply(m, "REQ 3 \(device):cmd_\(i) \(device):cmd_\(i + 1) \(device):cmd_x") == "RES 3 \(i) ? ?\n")
        }
    }

    @Test func longRequestsCrossGroups() throws {
        // Several probe groups, with unknown devices, unknown commands and repeats spread over them.
        var text = ""
        for i in 0..<64 { text += "10.1.0.\(i):a:\(i):\(i % 3)\n" }
        let m = try map(text)
        for count in [1, 15, 16, 17, 31, 32, 33, 100] {
            var line = "REQ 5"
            var expected = "RES 5"
            var wait: UInt64 = 0
            for k in 0..<count {
                switch k % 4 {
                case 0, 1:
                    let d = (k * 7) % 64
                    line += " 10.1.0.\(d):a"
                    expected += " \(d)"
                    wait = max(wait, UInt64(d % 3) * 1_000_000_000)
                case 2:
                    line += " 10.1.0.\(k % 64):b"
                    expected += " ?"
                default:
                    line += " [::ffff:10.1.0.\(k % 64)]:a"  // the same device, spelt as IPv6
                    expected += " \(k % 64)"
                    wait = max(wait, UInt64((k % 64) % 3) * 1_000_000_000)
                }
            }
            let out = ByteBuffer()
            let outcome = withBytes(line) { ServerProtocol.handle(line: $0, map: m, maxItems: 1024, reply: out) }
            #expect(out.readableString == expected + "\n", "\(count) items")
            #expect(outcome == .request(id: 5, waitNanos: wait, commands: count, unknown: count / 4 + (count % 4 > 2 ? 1 : 0)))
        }
        // A bad item in a later group still fails the whole request, with no partial reply.
        var line = "REQ 6"
        for _ in 0..<20 { line += " 10.1.0.1:a" }
        #expect(reply(m, line + " 10.1.0.1:a/b") == "ERR 6 BAD_ITEM item 21: command must be 1-64 characters of A-Z a-z 0-9 _ . -\n")
    }

    @Test func ipv4FastPathAgreesWithTheGeneralParser() {
        // Every item the fast path accepts, the general parser accepts with the same result; and the fast path
        // accepts every well-formed dotted quad.
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789..:::ab_-/ 9".utf8)
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...18, using: &rng)
            let bytes = (0..<length).map { _ in alphabet.randomElement(using: &rng)! }
            withBytes(bytes) { b in
                if let fast = ItemSyntax.parseIPv4Item(b) {
                    guard case .success(let general) = ItemSyntax.parseAny(b) else {
                        Issue.record("fast path accepted '\(String(decoding: bytes, as: UTF8.self))'")
                        return
                    }
                    #expect(fast.device == general.device && fast.commandStart == general.commandStart)
                }
            }
        }
        for text in ["0.0.0.0:x", "255.255.255.255:a", "1.22.133.4:status", "10.0.0.1:\(String(repeating: "c", count: 64))"] {
            withBytes(text) { b in
                #expect(ItemSyntax.parseIPv4Item(b) != nil, "\(text)")
            }
        }
        for text in ["01.0.0.0:x", "256.0.0.0:x", "1.2.3.4:", "1.2.3.4:a:b", "1.2.3:x", "1.2.3.4.5:x", "1.2.3.1000:x",
                     "1.2.3.4:\(String(repeating: "c", count: 65))", "[1.2.3.4]:x", "::1:x"] {
            withBytes(text) { b in
                #expect(ItemSyntax.parseIPv4Item(b) == nil, "\(text)")
            }
        }
    }
}
