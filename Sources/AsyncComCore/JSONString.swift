/// JSON string literals, the one escaping rule of the project (HTTP replies, the client's summary and result
/// lines): quotes and backslashes escaped, LF, CR and HTAB as `\n`, `\r`, `\t`, other control bytes as
/// `\u00XX`, every other byte (UTF-8) as it is.
public enum JSONString {
    @inline(__always) static func forEachEscaped(_ bytes: UnsafeRawBufferPointer, _ emit: (UInt8) -> Void) {
        emit(UInt8(ascii: "\""))
        for b in bytes {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                emit(UInt8(ascii: "\\"))
                emit(b)
            case 0x0A, 0x0D, 0x09:
                emit(UInt8(ascii: "\\"))
                emit(b == 0x0A ? UInt8(ascii: "n") : b == 0x0D ? UInt8(ascii: "r") : UInt8(ascii: "t"))
            case 0..<0x20:
                for c in "\\u00".utf8 { emit(c) }
                emit(hexDigit(b >> 4))
                emit(hexDigit(b & 15))
            default:
                emit(b)
            }
        }
        emit(UInt8(ascii: "\""))
    }

    public static func append(_ bytes: UnsafeRawBufferPointer, to buffer: ByteBuffer) {
        forEachEscaped(bytes) { buffer.append(byte: $0) }
    }

    public static func append(_ text: String, to buffer: ByteBuffer) {
        var text = text
        text.withUTF8 { append(UnsafeRawBufferPointer($0), to: buffer) }
    }

    /// `text` as a JSON string literal, quotes included.
    public static func quoted(_ text: String) -> String {
        var text = text
        var out: [UInt8] = []
        return text.withUTF8 { utf8 in
            out.reserveCapacity(utf8.count + 2)
            forEachEscaped(UnsafeRawBufferPointer(utf8)) { out.append($0) }
            return String(decoding: out, as: UTF8.self)
        }
    }

    @inline(__always) static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x57 + v }
}
