import Testing
@testable import AsyncComCore

/// The rules the libraries keep in one place each (issue 16): quoting bytes for messages, JSON strings, the
/// 64-bit mix, seconds to nanoseconds.
@Suite struct OneRuleTests {
    @Test func printableQuoting() {
        func quote(_ bytes: [UInt8], limit: Int) -> String { bytes.withUnsafeBytes { Wire.printable($0, limit: limit) } }
        #expect(quote(Array("abc".utf8), limit: 32) == "abc")
        #expect(quote([0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0x20, 0x7E], limit: 32) == "????? ~")
        #expect(quote(Array("abcdef".utf8), limit: 6) == "abcdef")
        #expect(quote(Array("abcdefg".utf8), limit: 6) == "abcdef...")
        let reply = ByteBuffer()
        Array("abcdefg".utf8).withUnsafeBytes { Wire.appendPrintable($0, limit: 6, to: reply) }
        #expect(reply.readableString == "abcdef...")
    }

    @Test func jsonStrings() {
        #expect(JSONString.quoted("") == "\"\"")
        #expect(JSONString.quoted("a\"b\\c") == "\"a\\\"b\\\\c\"")
        #expect(JSONString.quoted("\n\r\t\u{1}\u{1F}") == "\"\\n\\r\\t\\u0001\\u001f\"")
        #expect(JSONString.quoted("é/") == "\"é/\"")
        let b = ByteBuffer()
        JSONString.append("x\ny", to: b)
        #expect(b.readableString == JSONString.quoted("x\ny"))
    }

    /// Reference outputs of splitmix64 (Vigna's generator) for seeds 0 and 1234567; `mix` is its step.
    @Test func splitMix64MatchesTheReference() {
        var zero = SplitMix64(seed: 0)
        #expect([zero.next(), zero.next()] == [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4])
        var g = SplitMix64(seed: 1_234_567)
        #expect((0..<5).map { _ in g.next() } == [6457827717110365317, 3203168211198807973, 9817491932198370423,
                                                  4593380528125082431, 16408922859458223821])
        #expect(SplitMix64.mix(0) == 0xE220_A839_7B1D_CDAF)
    }

    @Test func secondsAsNanos() {
        #expect(0.0.secondsAsNanos == 0)
        #expect((-1.0).secondsAsNanos == 0)
        #expect(Double.nan.secondsAsNanos == 0)
        #expect(1.5.secondsAsNanos == 1_500_000_000)
        #expect(0.000_000_001.secondsAsNanos == 1 || 0.000_000_001.secondsAsNanos == 0)
        #expect(1e300.secondsAsNanos == UInt64.max / 2)
        #expect(Double.infinity.secondsAsNanos == UInt64.max / 2)
    }
}
