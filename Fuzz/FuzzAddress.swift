// Fuzz target "address": DeviceAddress.parse and ItemSyntax.parse against inet_pton-based references,
// printed addresses parsing back to themselves; Endpoint(parsing:) round trips; WaitParser against a reference.
#if canImport(Glibc)
import Glibc
#endif
import AsyncComCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    checkAddress(input)
    checkItem(input)
    checkEndpoint(String(decoding: input, as: UTF8.self))
    checkWait(input)
    return 0
}

private func checkAddress(_ text: UnsafeRawBufferPointer) {
    let parsed = DeviceAddress.parse(text)
    require(parsed == referenceAddress(text), "\(show(text)) -> \(String(describing: parsed)), reference \(String(describing: referenceAddress(text)))")
    if let v4 = DeviceAddress.parseIPv4(text) {
        // Strict dotted quads are canonical: printing gives back the input.
        require(parsed == DeviceAddress(ipv4: v4) && parsed!.isIPv4 && equals(text, parsed!.description),
                "\(show(text)) -> \(parsed!.description)")
    }
    guard let address = parsed else { return }
    let printed = address.description
    require(DeviceAddress.parse(printed) == address, "\(show(text)) printed as \(printed) does not parse back")
    if address.isIPv4 {
        var quad = printed
        let v4 = quad.withUTF8 { DeviceAddress.parseIPv4(UnsafeRawBufferPointer($0)) }
        require(v4.map { DeviceAddress(ipv4: $0) } == address, "\(show(text)) printed as \(printed), not a dotted quad")
    }
    if !address.isIPv4 { require(DeviceAddress.parse("[\(printed)]") == address, "[\(printed)] does not parse") }
}

private func checkItem(_ item: UnsafeRawBufferPointer) {
    let context = "item \(show(item))"
    switch ItemSyntax.parse(item) {
    case .success(let parsed):
        guard let (device, command) = referenceItem(item) else { fail("reference rejects \(context)") }
        require(parsed.device == device && parsed.commandStart == item.count - command.count, context)
        require(ItemSyntax.isValidCommand(command), context)
    case .failure(let reason):
        require(referenceItem(item) == nil, "\(context) rejected (\(reason)), reference accepts it")
    }
}

private func checkEndpoint(_ text: String) {
    let endpoint: Endpoint
    do throws(Endpoint.ParseError) {
        endpoint = try Endpoint(parsing: text)
    } catch {
        require(error.input == text && !error.reason.isEmpty, "\(error)")
        return
    }
    switch endpoint {
    case .unix(let path):
        require(!path.isEmpty && path.utf8.count < 108 && text == "unix://" + path, "\(text) -> \(endpoint)")
    case .tcp(let host, let port), .tls(let host, let port):
        // HOST:PORT without a scheme is tcp:// (issue 16).
        let scheme = endpoint.isTLS ? "tls://" : "tcp://"
        let digits = text.utf8.reversed().prefix(while: { $0 >= 0x30 && $0 <= 0x39 })
        require(!host.isEmpty && (text.hasPrefix(scheme) || (!endpoint.isTLS && !text.contains("://")))
                && UInt64(String(decoding: digits.reversed(), as: UTF8.self)) == UInt64(port),
                "\(text) -> \(endpoint)")
    }
    // What we print is what we parse: the description names the same endpoint.
    do throws(Endpoint.ParseError) {
        let again = try Endpoint(parsing: endpoint.description)
        require(again == endpoint, "\(text) -> \(endpoint) -> \(endpoint.description) -> \(again)")
    } catch {
        fail("\(text) -> \(endpoint), whose description \(endpoint.description) does not parse: \(error)")
    }
}

private func checkWait(_ text: UnsafeRawBufferPointer) {
    let parsed = WaitParser.parseNanos(text)
    // Reference: digits, optionally '.' and 1-9 digits, at most one day, computed with arbitrary precision
    // on the digit strings.
    let parts = text.split(separator: UInt8(ascii: "."), maxSplits: 1, omittingEmptySubsequences: false)
    let digits = { (p: Slice<UnsafeRawBufferPointer>) in !p.isEmpty && p.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
    var expected: UInt64?
    if digits(parts[0]) && (parts.count == 1 || (digits(parts[1]) && parts[1].count <= 9)) {
        let whole = parts[0].drop(while: { $0 == 0x30 })
        if whole.count <= 5 {
            let seconds = whole.isEmpty ? 0 : UInt64(String(decoding: whole, as: UTF8.self))!
            let fraction = parts.count == 2
                ? UInt64(String(decoding: parts[1], as: UTF8.self) + String(repeating: "0", count: 9 - parts[1].count))!
                : 0
            let nanos = seconds * 1_000_000_000 + fraction
            if nanos <= DeviceMap.maxWaitNanos { expected = nanos }
        }
    }
    require(parsed == expected, "wait \(show(text)) -> \(String(describing: parsed)), reference \(String(describing: expected))")
}
