import Foundation
import Testing
@testable import AsyncComCore

/// Parses `text` as a /v1/commands body; the items (split from the REQ-style line) or the failure.
func parseBody(_ bytes: [UInt8], _ format: CommandsBody.Format = .json) -> Result<[[UInt8]], CommandsBody.Failure> {
    var copy = bytes
    let line = ByteBuffer()
    let result = copy.withUnsafeMutableBytes { CommandsBody.parse($0, format: format, into: line) }
    switch result {
    case .failure(let f): return .failure(f)
    case .success(let n):
        let items = Array(line.readableView).split(separator: 0x20).map { Array($0) }
        #expect(items.count == n)
        return .success(items)
    }
}

func parseBody(_ text: String, _ format: CommandsBody.Format = .json) -> Result<[[UInt8]], CommandsBody.Failure> {
    parseBody(Array(text.utf8), format)
}

/// What Foundation's JSONSerialization makes of `bytes` for this shape: the items, or nil when it is not a
/// JSON object whose only key is "items" holding an array of strings.
func referenceItems(_ bytes: [UInt8]) -> [[UInt8]]? {
    guard let object = try? JSONSerialization.jsonObject(with: Data(bytes), options: []),
          let dict = object as? [String: Any], dict.count == 1,
          let items = dict["items"] as? [Any] else { return nil }
    var out: [[UInt8]] = []
    for item in items {
        guard let s = item as? String, !(item is NSNumber) else { return nil }
        out.append(Array(s.utf8))
    }
    return out
}

/// Compares the parser with the reference on one input; returns a description of a disagreement, or nil.
func disagreement(_ bytes: [UInt8]) -> String? {
    let ours = parseBody(bytes)
    let reference = referenceItems(bytes)
    let validUTF8 = String(validating: bytes, as: UTF8.self) != nil
    switch (ours, reference) {
    case (.success(let items), .some(let expected)):
        return items == expected ? nil : "items differ: \(items) vs \(expected)"
    case (.success, .none):
        // We do not check UTF-8 (items must be ASCII, and the item parser refuses the rest).
        return validUTF8 ? "accepted what the reference refuses" : nil
    case (.failure(let f), .some(let expected)):
        // Explained refusals: items that cannot be items, or a key given twice (the reference keeps the last).
        if f.code == .badItem, expected.contains(where: { $0.isEmpty || $0.contains { $0 < 0x21 || $0 == 0x7F } }) {
            return nil
        }
        if f.message.contains("given twice") { return nil }
        // Foundation accepts a trailing comma ({"items": [],}), which RFC 8259 does not.
        if f.code == .badRequest, hasTrailingComma(bytes) { return nil }
        return "refused (\(f.message)) what the reference accepts: \(expected)"
    case (.failure, .none):
        return nil
    }
}

/// Whether a `,` is followed (after JSON whitespace) by `}` or `]` anywhere.
func hasTrailingComma(_ bytes: [UInt8]) -> Bool {
    for (i, c) in bytes.enumerated() where c == UInt8(ascii: ",") {
        var j = i + 1
        while j < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[j]) { j += 1 }
        if j < bytes.count, bytes[j] == UInt8(ascii: "}") || bytes[j] == UInt8(ascii: "]") { return true }
    }
    return false
}

@Suite struct CommandsBodyTests {
    @Test("JSON: items in order, any whitespace, escapes decoded")
    func json() throws {
        #expect(try parseBody(#"{"items": ["10.0.0.1:a", "[::1]:b"]}"#).get() == [Array("10.0.0.1:a".utf8), Array("[::1]:b".utf8)])
        #expect(try parseBody(" \r\n\t{ \"items\" :\n[ \"1.2.3.4:x\" ] } \n").get() == [Array("1.2.3.4:x".utf8)])
        #expect(try parseBody(#"{"\u0069tems":["1.2.3.4:\u0061\/b\u00e9"]}"#).get() == [Array("1.2.3.4:a/bé".utf8)])
        #expect(try parseBody(#"{"items":["\ud83d\ude00"]}"#).get() == [Array("😀".utf8)])
        #expect(try parseBody(#"{"items":[]}"#).get() == [])
    }

    @Test("JSON errors: syntax is BAD_REQUEST, a bad element is BAD_ITEM with its index")
    func jsonErrors() {
        func failure(_ text: String) -> CommandsBody.Failure? {
            if case .failure(let f) = parseBody(text) { return f }
            return nil
        }
        for bad in ["", "[]", "{", #"{"items"}"#, #"{"items": ["a"]"#, #"{"items": ["a",]}"#, #"{"items": ["a"]} x"#,
                    #"{"items": "a"}"#, "{\"items\": [\"a\u{1}\"]}", #"{"items": ["\x"]}"#, #"{"items": ["\ud800"]}"#,
                    #"{"other": 1}"#, #"{}"#, #"{"items": [], "items": []}"#] {
            #expect(failure(bad)?.code == .badRequest, "\(bad)")
            #expect(failure(bad)?.index == nil, "\(bad)")
        }
        #expect(failure(#"{"items": ["1.2.3.4:a", 5]}"#) == .init(.badItem, "items[1]: must be a string \"ip:command\"", index: 1))
        #expect(failure(#"{"items": ["1.2.3.4:a b"]}"#)?.index == 0)
        #expect(failure(#"{"items": ["ok:a", "1.2.3.4:\t"]}"#)?.index == 1)
        #expect(failure(#"{"items": ["ok:a", ""]}"#) == .init(.badItem, "items[1]: missing ':' between device and command", index: 1))
    }

    @Test("text: one item per line, CRLF, blanks around items and blank lines ignored; a blank inside is BAD_ITEM")
    func text() throws {
        #expect(try parseBody("1.2.3.4:a\r\n\n  \t\n  [::1]:b \n1.2.3.4:c", .text).get()
                == [Array("1.2.3.4:a".utf8), Array("[::1]:b".utf8), Array("1.2.3.4:c".utf8)])
        #expect(try parseBody("", .text).get() == [])
        if case .failure(let f) = parseBody("1.2.3.4:a\n1.2.3.4:b c\n", .text) {
            #expect(f.code == .badItem && f.index == 1)
        } else {
            Issue.record("a blank inside an item was accepted")
        }
    }

    @Test("JSON parser agrees with JSONSerialization on generated and mutated documents")
    func agreesWithReference() {
        var rng = SplitMix64(seed: 0x5EED_0012)
        let pieces: [String] = ["10.0.0.1:foo", "[::1]:bar", "a", "", " ", "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\u0041",
                                "\\u00e9", "\\ud83d\\ude00", "\\ud800", "é", "\\x", "\u{7f}"]
        let noise: [UInt8] = Array("{}[]\",: \n\\u0aitems".utf8) + [0x00, 0x1F, 0xC3, 0xFF]
        var checked = 0
        for _ in 0..<4000 {
            var doc = "{"
            if rng.next() % 8 == 0 { doc += "\"x\": 1, " }
            doc += "\"items\"" + (rng.next() % 2 == 0 ? ":" : " : ") + "["
            let count = Int(rng.next() % 4)
            for k in 0..<count {
                if k > 0 { doc += rng.next() % 2 == 0 ? "," : " ,\n" }
                if rng.next() % 10 == 0 { doc += "\(rng.next() % 100)"; continue }
                var s = ""
                for _ in 0..<Int(rng.next() % 3) { s += pieces[Int(rng.next() % UInt64(pieces.count))] }
                doc += "\"" + s + "\""
            }
            doc += "]}"
            var bytes = Array(doc.utf8)
            for _ in 0..<Int(rng.next() % 3) where !bytes.isEmpty {
                let at = Int(rng.next() % UInt64(bytes.count))
                switch rng.next() % 3 {
                case 0: bytes.remove(at: at)
                case 1: bytes.insert(noise[Int(rng.next() % UInt64(noise.count))], at: at)
                default: bytes[at] = noise[Int(rng.next() % UInt64(noise.count))]
                }
            }
            if let d = disagreement(bytes) {
                Issue.record("\(String(decoding: bytes, as: UTF8.self).debugDescription): \(d)")
                break
            }
            checked += 1
        }
        #expect(checked == 4000)
    }
}

@Suite struct HTTPCommandsTests {
    static let mapText = """
        10.0.0.1:fast:7:0
        10.0.0.1:slow:30:0.3
        10.0.0.2:big:9223372036854775807:0
        """

    func handle(_ body: String, format: CommandsBody.Format = .json, maxItems: Int = 8) throws -> (HTTPCommands.Outcome, String) {
        let m = try map(Self.mapText)
        var bytes = Array(body.utf8)
        let reply = ByteBuffer(), work = ByteBuffer()
        let outcome = bytes.withUnsafeMutableBytes {
            HTTPCommands.handle(body: $0, format: format, map: m, maxItems: maxItems, reply: reply, work: work)
        }
        return (outcome, reply.readableString)
    }

    @Test("results in item order, null for unknown, the sum and the unknown count; due at the slowest item")
    func answered() throws {
        let (outcome, body) = try handle(#"{"items": ["10.0.0.1:fast", "10.0.0.9:fast", "10.0.0.1:slow"]}"#)
        #expect(outcome == .answered(waitNanos: 300_000_000, commands: 3, unknown: 1))
        #expect(body == "{\"results\":[7,null,30],\"sum\":37,\"unknown\":1}\n")
        let (_, text) = try handle("10.0.0.1:fast\n10.0.0.1:fast\n", format: .text)
        #expect(text == "{\"results\":[7,7],\"sum\":14,\"unknown\":0}\n")
    }

    @Test("a sum beyond Int64 is exact")
    func wideSum() throws {
        let (_, body) = try handle(#"{"items": ["10.0.0.2:big", "10.0.0.2:big", "10.0.0.1:fast"]}"#)
        #expect(body == "{\"results\":[9223372036854775807,9223372036854775807,7],\"sum\":18446744073709551621,\"unknown\":0}\n")
    }

    @Test("errors carry protocol v1's codes, the item's index and a JSON body")
    func errors() throws {
        let (o1, b1) = try handle(#"{"items": ["10.0.0.1:fast", "10.0.0.300:fast"]}"#)
        #expect(o1 == .failed(status: 400, .init(.badItem, "items[1]: invalid device address", index: 1)))
        #expect(b1 == "{\"error\":{\"code\":\"BAD_ITEM\",\"message\":\"items[1]: invalid device address\",\"index\":1}}\n")
        let (o2, _) = try handle(#"{"items": ["10.0.0.1:fast", "10.0.0.1:fast", "10.0.0.1:fast"]}"#, maxItems: 2)
        #expect(o2 == .failed(status: 413, .init(.tooManyItems, "at most 2 items per request (got 3)", index: 2)))
        let (o3, _) = try handle(#"{"items": []}"#)
        #expect(o3 == .failed(status: 400, .init(.noItems, "expected at least one item")))
        let (o4, b4) = try handle(#"{"items": ["#)
        guard case .failed(400, let f) = o4 else { Issue.record("\(o4)"); return }
        #expect(f.code == .badRequest && b4.hasPrefix("{\"error\":{\"code\":\"BAD_REQUEST\",\"message\":\"invalid JSON at byte"))
    }

    @Test("the same items give the same results as a protocol v1 REQ")
    func sameAsProtocolV1() throws {
        let m = try map(Self.mapText)
        let items = ["10.0.0.1:fast", "10.0.0.1:slow", "::ffff:10.0.0.1:fast", "10.0.0.2:big", "1.1.1.1:x"]
        let (_, body) = try handle("{\"items\": [" + items.map { "\"\($0)\"" }.joined(separator: ",") + "]}")
        let res = ByteBuffer()
        _ = withBytes("REQ 5 " + items.joined(separator: " ")) { ServerProtocol.handle(line: $0, map: m, maxItems: 8, reply: res) }
        let values = res.readableString.dropLast().split(separator: " ").dropFirst(2).map { $0 == "?" ? "null" : String($0) }
        #expect(body.hasPrefix("{\"results\":[" + values.joined(separator: ",") + "]"))
    }

    @Test("JSON strings escape quotes, backslashes and control bytes")
    func jsonString() {
        let b = ByteBuffer()
        JSONString.append("a\"b\\c\n\u{1}é", to: b)
        #expect(b.readableString == "\"a\\\"b\\\\c\\n\\u0001é\"")
    }
}
