// Fuzz target "body": an HTTP POST /v1/commands body. The JSON parser (CommandsBody) is checked against
// Foundation's JSONSerialization as the reference model, the text format against a line split, and the whole
// request (HTTPCommands.handle) must answer every input with a well-formed JSON reply or error.
import AsyncComCore
import Foundation

private let fuzzMap: DeviceMap = {
    var text = "10.0.0.1:foo:7:1\n10.0.0.1:bar:-3:0\n2001:db8::1:x:9223372036854775807:0\n"
    return text.withUTF8 { try! DeviceMap(parsing: UnsafeRawBufferPointer($0), fileName: "body-fuzz-map") }
}()

/// The items JSONSerialization finds for the one accepted shape, or nil.
private func reference(_ bytes: [UInt8]) -> [[UInt8]]? {
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

private func hasTrailingComma(_ bytes: [UInt8]) -> Bool {
    for (i, c) in bytes.enumerated() where c == UInt8(ascii: ",") {
        var j = i + 1
        while j < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[j]) { j += 1 }
        if j < bytes.count, bytes[j] == UInt8(ascii: "}") || bytes[j] == UInt8(ascii: "]") { return true }
    }
    return false
}

private func parse(_ bytes: [UInt8], _ format: CommandsBody.Format) -> Result<[[UInt8]], CommandsBody.Failure> {
    var copy = bytes
    let line = ByteBuffer(capacity: 8)
    let result = copy.withUnsafeMutableBytes { CommandsBody.parse($0, format: format, into: line) }
    switch result {
    case .failure(let f):
        return .failure(f)
    case .success(let n):
        let items = Array(line.readableView).split(separator: 0x20, omittingEmptySubsequences: false).dropFirst().map { Array($0) }
        require(items.count == n, "\(n) items reported, \(items.count) appended")
        require(line.readableBytes == 0 || line.readableView.first == 0x20, "line does not start with a blank")
        for item in items {
            require(!item.isEmpty && !item.contains { $0 < 0x21 || $0 == 0x7F }, "item with a separator: \(item)")
        }
        return .success(items)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let input = show(UnsafeRawBufferPointer(start: data, count: size))

    // JSON against the reference.
    let ours = parse(bytes, .json)
    let expected = reference(bytes)
    switch (ours, expected) {
    case (.success(let items), .some(let want)):
        require(items == want, "items differ from JSONSerialization's for \(input)")
    case (.success, .none):
        require(String(validating: bytes, as: UTF8.self) == nil, "accepted what JSONSerialization refuses: \(input)")
    case (.failure(let f), .some(let want)):
        let explained = (f.code == .badItem && want.contains { $0.isEmpty || $0.contains { $0 < 0x21 || $0 == 0x7F } })
            || f.message.contains("given twice") || (f.code == .badRequest && hasTrailingComma(bytes))
        require(explained, "refused (\(f.message)) what JSONSerialization accepts: \(input)")
    case (.failure(let f), .none):
        require(f.code == .badRequest || f.code == .badItem, "unexpected code \(f.code) for \(input)")
    }

    // Text: every non-blank line is one item, in order, unless a line holds a blank inside.
    if case .success(let items) = parse(bytes, .text) {
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line -> [UInt8] in
            var l = Array(line)
            while let c = l.first, c == 0x20 || c == 0x09 { l.removeFirst() }
            while let c = l.last, c == 0x20 || c == 0x09 || c == 0x0D { l.removeLast() }
            return l
        }.filter { !$0.isEmpty }
        require(items == lines, "text items differ from the lines of \(input)")
    }

    // The whole request: a JSON object either way, and the status matches the outcome.
    for format in [CommandsBody.Format.json, .text] {
        var copy = bytes
        let reply = ByteBuffer(capacity: 8), work = ByteBuffer(capacity: 8)
        let outcome = copy.withUnsafeMutableBytes {
            HTTPCommands.handle(body: $0, format: format, map: fuzzMap, maxItems: 4, reply: reply, work: work)
        }
        let body = Array(reply.readableView)
        require(body.last == 0x0A, "reply does not end with a newline")
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.dropLast()), options: []) as? [String: Any] else {
            fail("reply is not a JSON object: \(body.withUnsafeBytes { show($0) })")
        }
        switch outcome {
        case .answered(_, let commands, let unknown):
            let results = object["results"] as? [Any]
            require(results?.count == commands, "results count")
            require(results?.filter { $0 is NSNull }.count == unknown, "null count")
        case .failed(let status, let f):
            require(status == 400 || status == 413, "status \(status)")
            let error = object["error"] as? [String: Any]
            require(error?["code"] as? String == f.code.rawValue, "error code")
        }
    }
    return 0
}
