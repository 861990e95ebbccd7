/// `POST /v1/commands` without the HTTP: a body in, the JSON reply (or error) out. Pure, like `ServerProtocol`.
///
/// The body's items become one protocol v1 `REQ` line (`CommandsBody`), `ServerProtocol.handle` answers it as
/// it answers any `REQ` (same parsing, lookups and errors), and its `RES` line is rewritten as
/// `{"results":[1,null,...],"sum":N,"unknown":K}` plus a newline. Per request: no allocation once the two
/// buffers have grown; per item: the protocol v1 cost plus copying a few bytes twice.
public enum HTTPCommands {
    public enum Outcome: Equatable, Sendable {
        /// The reply body is in `reply`; it is due `waitNanos` after the request arrived.
        case answered(waitNanos: UInt64, commands: Int, unknown: Int)
        /// `reply` holds the error body (`appendError`) to send with `status`.
        case failed(status: Int, CommandsBody.Failure)
    }

    /// Answers `body`. `reply` and `work` are scratch buffers (cleared here); the reply body ends in `reply`.
    public static func handle(body: UnsafeMutableRawBufferPointer, format: CommandsBody.Format, map: DeviceMap,
                              maxItems: Int, reply: ByteBuffer, work: ByteBuffer) -> Outcome {
        reply.clear()
        work.clear()
        reply.append("REQ 0")
        let count: Int
        switch CommandsBody.parse(body, format: format, into: reply) {
        case .success(let n): count = n
        case .failure(let f): return fail(400, f, reply)
        }
        if count == 0 {
            return fail(400, .init(.noItems, "expected at least one item"), reply)
        }
        if count > maxItems {
            return fail(413, .init(.tooManyItems, "at most \(maxItems) items per request (got \(count))", index: maxItems), reply)
        }
        switch ServerProtocol.handle(line: reply.readableView, map: map, maxItems: maxItems, reply: work) {
        case .request(_, let waitNanos, let commands, let unknown):
            reply.clear()
            appendResults(resLine: work.readableView, to: reply, unknown: unknown)
            return .answered(waitNanos: waitNanos, commands: commands, unknown: unknown)
        case .error(.badItem, _):
            return fail(400, badItem(in: reply.readableView), reply)
        case .error(let code, _):
            // Not reached for a line built from a parsed body; kept honest rather than trapping.
            return fail(400, .init(code, String(decoding: work.readableView, as: UTF8.self)), reply)
        case .empty, .hello, .ping, .stats, .quit:
            return fail(400, .init(.badRequest, "not a request"), reply)
        }
    }

    /// `{"error":{"code":"...","message":"...","index":N}}` plus a newline (`index` only when there is one).
    public static func appendError(_ f: CommandsBody.Failure, to buffer: ByteBuffer) {
        buffer.append("{\"error\":{\"code\":\"")
        buffer.append(string: f.code.rawValue)
        buffer.append("\",\"message\":")
        JSONString.append(f.message, to: buffer)
        if let index = f.index {
            buffer.append(",\"index\":")
            buffer.appendDecimal(UInt64(index))
        }
        buffer.append("}}\n")
    }

    private static func fail(_ status: Int, _ f: CommandsBody.Failure, _ reply: ByteBuffer) -> Outcome {
        reply.clear()
        appendError(f, to: reply)
        return .failed(status: status, f)
    }

    /// The first item of a `REQ 0 ...` line that `ItemSyntax` refuses, as a BAD_ITEM failure (error path only).
    static func badItem(in line: UnsafeRawBufferPointer) -> CommandsBody.Failure {
        var index = 0
        var i = 6  // after "REQ 0 "
        let n = line.count
        while i < n {
            var end = i
            while end < n && line[end] != 0x20 { end += 1 }
            if case .failure(let e) = ItemSyntax.parse(UnsafeRawBufferPointer(rebasing: line[i..<end])) {
                return .init(.badItem, "items[\(index)]: \(e.description)", index: index)
            }
            index += 1
            i = end + 1
        }
        return .init(.badItem, "bad item")
    }

    /// Rewrites `RES 0 1 ? 5\n` as `{"results":[1,null,5],"sum":6,"unknown":1}\n`.
    static func appendResults(resLine: UnsafeRawBufferPointer, to out: ByteBuffer, unknown: Int) {
        out.append("{\"results\":[")
        var sum: Int64 = 0
        var wide: Int128? = nil  // only once the sum has left Int64
        var i = 6  // after "RES 0 "
        let n = resLine.count - 1  // without the LF
        var first = true
        while i < n {
            var end = i
            while end < n && resLine[end] != 0x20 { end += 1 }
            if !first { out.append(byte: UInt8(ascii: ",")) }
            first = false
            let token = UnsafeRawBufferPointer(rebasing: resLine[i..<end])
            if token.count == 1 && token[0] == UInt8(ascii: "?") {
                out.append("null")
            } else {
                out.append(token)
                // RES values are canonical int64 decimals.
                if case .success(let v) = ResponseParser.parse(token) {
                    if let w = wide {
                        wide = w + Int128(v)
                    } else {
                        let (s, overflow) = sum.addingReportingOverflow(v)
                        if overflow { wide = Int128(sum) + Int128(v) } else { sum = s }
                    }
                }
            }
            i = end + 1
        }
        out.append("],\"sum\":")
        if let wide { out.append(string: String(wide)) } else { out.appendDecimal(sum) }
        out.append(",\"unknown\":")
        out.appendDecimal(UInt64(unknown))
        out.append("}\n")
    }
}
