#if canImport(Glibc)
import Glibc
#endif
import AsyncComCore

/// Reads a running server's `STATS` line over a connection of its own (blocking, loopback: the bench's
/// servers listen on 127.0.0.1).
enum ServerStatsProbe {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func read(_ endpoint: Endpoint) throws -> [String: UInt64] {
        guard case .tcp(_, let port) = endpoint else { throw Failure(description: "STATS: not a TCP endpoint") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "STATS: socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard Loopback.connect(fd, to: port) == 0 else { throw Failure(description: "STATS: connect: \(String(cString: strerror(errno)))") }
        let request = "STATS\n"
        guard request.withCString({ send(fd, $0, 6, Int32(MSG_NOSIGNAL)) }) == 6 else {
            throw Failure(description: "STATS: send failed")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while bytes.last != 0x0A {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw Failure(description: "STATS: connection closed before the reply") }
            bytes += chunk[0..<n]
        }
        var fields: [String: UInt64] = [:]
        for token in String(decoding: bytes.dropLast(), as: UTF8.self).split(separator: " ").dropFirst() {
            guard let eq = token.firstIndex(of: "="), let value = UInt64(token[token.index(after: eq)...]) else { continue }
            fields[String(token[..<eq])] = value
        }
        return fields
    }
}

/// IPv4 loopback addresses for the bench's own sockets.
enum Loopback {
    /// `127.0.0.<last>` and `port`.
    static func address(_ last: UInt32, port: UInt16 = 0) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(port).bigEndian
        address.sin_addr.s_addr = in_addr_t(0x7F00_0000 | last).bigEndian
        return address
    }

    static func bind(_ fd: Int32, to last: UInt32) -> Int32 {
        var address = address(last)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// connect(2) to 127.0.0.1:`port`.
    static func connect(_ fd: Int32, to port: UInt16) -> Int32 {
        var address = address(1, port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}
