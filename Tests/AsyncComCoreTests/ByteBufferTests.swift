import Testing
@testable import AsyncComCore

@Suite struct ByteBufferTests {
    @Test func appendAndConsume() {
        let b = ByteBuffer(capacity: 4)
        #expect(b.capacity == 16)  // a floor keeps tiny buffers useful
        #expect(b.isEmpty)
        b.append("hello")
        b.append(byte: 0x20)
        b.append(string: "wörld")
        #expect(b.readableString == "hello wörld")
        #expect(b.readableBytes == 12)
        b.consume(6)
        #expect(b.readableString == "wörld")
        b.consume(6)
        #expect(b.isEmpty)
        #expect(b.readerIndex == 0 && b.writerIndex == 0)  // fully consumed: indices reset
    }

    @Test func growthKeepsContent() {
        let b = ByteBuffer(capacity: 16)
        var expected: [UInt8] = []
        for i in 0..<10_000 {
            let byte = UInt8(truncatingIfNeeded: i * 7)
            b.append(byte: byte)
            expected.append(byte)
        }
        #expect(Array(b.readableView) == expected)
        #expect(b.capacity >= 10_000 && b.capacity.nonzeroBitCount == 1)
    }

    @Test func compactionInsteadOfGrowth() {
        let b = ByteBuffer(capacity: 64)
        b.append(string: String(repeating: "a", count: 60))
        b.consume(50)
        b.append(string: String(repeating: "b", count: 30))  // 10 readable + 30: fits after compaction
        #expect(b.capacity == 64)
        #expect(b.readerIndex == 0)
        #expect(b.readableString == String(repeating: "a", count: 10) + String(repeating: "b", count: 30))
    }

    @Test func truncateByReadableMarkSurvivesGrowthAndCompaction() {
        let b = ByteBuffer(capacity: 32)
        b.append(string: String(repeating: "x", count: 30))
        b.consume(20)
        let mark = b.readableBytes
        b.append(string: String(repeating: "y", count: 200))  // compacts or grows: indices move
        b.truncate(readableBytes: mark)
        #expect(b.readableString == String(repeating: "x", count: 10))
    }

    @Test func discardReadBytes() {
        let b = ByteBuffer(capacity: 32)
        b.append("0123456789")
        b.consume(4)
        b.discardReadBytes()
        #expect(b.readerIndex == 0 && b.writerIndex == 6)
        #expect(b.writableBytes == 26)
        #expect(b.readableString == "456789")
    }

    @Test func decimals() {
        let b = ByteBuffer(capacity: 16)
        for v: UInt64 in [0, 7, 9, 10, 99, 100, 12345, 18446744073709551615] {
            b.appendDecimal(v)
            b.append(byte: 0x2C)
        }
        for v: Int64 in [0, -1, 5, -42, .max, .min] {
            b.appendDecimal(v)
            b.append(byte: 0x2C)
        }
        #expect(b.readableString
                == "0,7,9,10,99,100,12345,18446744073709551615,0,-1,5,-42,9223372036854775807,-9223372036854775808,")
    }

    @Test func shrinkIfEmpty() {
        let b = ByteBuffer(capacity: 16)
        b.append(string: String(repeating: "q", count: 5000))
        b.shrinkIfEmpty(limit: 64)
        #expect(b.capacity >= 5000)  // not empty: kept
        b.consume(5000)
        b.shrinkIfEmpty(limit: 64)
        #expect(b.capacity == 64)
        b.append("ok")
        #expect(b.readableString == "ok")
    }

    @Test func readAndWritePointers() {
        let b = ByteBuffer(capacity: 16)
        b.reserveWritable(100)
        #expect(b.writableBytes >= 100)
        for i in 0..<3 { b.writePointer[i] = UInt8(ascii: "a") + UInt8(i) }
        b.didWrite(3)
        #expect(b.readableString == "abc")
        #expect(b.readPointer.pointee == UInt8(ascii: "a"))
        let other = ByteBuffer()
        other.append(b)
        other.append(b)
        #expect(other.readableString == "abcabc")
        // Appending a buffer to itself while it has to grow: the source must be read after the move.
        let selfish = ByteBuffer(capacity: 16)
        selfish.append("0123456789abcdef")
        selfish.append(selfish)
        #expect(selfish.readableString == "0123456789abcdef0123456789abcdef")
    }
}

@Suite struct EndpointTests {
    func parse(_ s: String) -> Endpoint? { try? Endpoint(parsing: s) }
    func reason(_ s: String) -> String? {
        do throws(Endpoint.ParseError) { _ = try Endpoint(parsing: s); return nil } catch { return error.reason }
    }

    @Test func valid() {
        #expect(parse("tcp://127.0.0.1:5557") == .tcp(host: "127.0.0.1", port: 5557))
        #expect(parse("tcp://[::1]:0") == .tcp(host: "::1", port: 0))
        #expect(parse("tcp://localhost:65535") == .tcp(host: "localhost", port: 65535))
        #expect(parse("unix:///tmp/asynccom.sock") == .unix(path: "/tmp/asynccom.sock"))
        #expect(parse(Endpoint.defaultURL) == Endpoint.default)
    }

    @Test func bareHostAndPortIsTCP() {
        #expect(parse("127.0.0.1:5557") == .tcp(host: "127.0.0.1", port: 5557))
        #expect(parse("[::1]:0") == .tcp(host: "::1", port: 0))
        #expect(parse("localhost:80") == .tcp(host: "localhost", port: 80))
        // Errors name what was written, not the tcp:// it stands for.
        #expect(reason("::1:80") == "IPv6 addresses go in brackets")
        #expect(reason("127.0.0.1") == "missing ':PORT'")
        do throws(Endpoint.ParseError) { _ = try Endpoint(parsing: "h:x"); Issue.record("parsed") } catch {
            #expect(error.input == "h:x")
        }
    }

    @Test func roundTrip() {
        for text in ["tcp://127.0.0.1:5557", "tcp://[::1]:80", "unix:///run/a.sock", "tcp://[2001:db8::1]:1"] {
            #expect(parse(text)?.description == text)
        }
    }

    @Test func invalid() {
        #expect(reason("http://x:1") == "unknown scheme")
        #expect(reason("tcp://127.0.0.1") == "missing ':PORT'")
        #expect(reason("tcp://:80") == "empty host")
        #expect(reason("tcp://h:65536") == "port must be a number from 0 to 65535")
        #expect(reason("tcp://h:+80") == "port must be a number from 0 to 65535")
        #expect(reason("tcp://h:") == "port must be a number from 0 to 65535")
        #expect(reason("tcp://::1:80") == "IPv6 addresses go in brackets")
        #expect(reason("tcp://[::1:80") == "missing ']'")
        #expect(reason("tcp://[::1]") == "missing ':PORT'")
        #expect(reason("tcp://[host]:1") == "brackets are for IPv6 addresses")
        #expect(reason("unix://") == "empty socket path")
        #expect(reason("unix:///" + String(repeating: "p", count: 107)) == "socket path longer than 107 bytes")
        #expect(parse("unix:///" + String(repeating: "p", count: 106)) != nil)
        let e = try? Endpoint(parsing: "bogus")
        #expect(e == nil)
    }
}
