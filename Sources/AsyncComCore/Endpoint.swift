/// Where a server listens or a client connects: `tcp://HOST:PORT`, `tcp://[IPv6]:PORT`, `tls://HOST:PORT` or
/// `unix:///path`; a bare `HOST:PORT` (or `[IPv6]:PORT`) means `tcp://HOST:PORT`.
public enum Endpoint: Hashable, Sendable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case unix(path: String)
    /// TCP with TLS on top (`tls://HOST:PORT`).
    case tls(host: String, port: UInt16)

    public static let defaultURL = "tcp://127.0.0.1:5557"
    public static let `default` = Endpoint.tcp(host: "127.0.0.1", port: 5557)

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let input: String
        public let reason: String
        public var description: String { "invalid endpoint '\(input)': \(reason) (expected tcp://HOST:PORT, tcp://[IPv6]:PORT, tls://HOST:PORT, unix:///path, or HOST:PORT for tcp://)" }
    }

    public init(parsing text: String) throws(ParseError) {
        // No scheme: TCP, as HOST:PORT means in most tools' listen and connect options.
        if !text.contains("://") {
            do throws(ParseError) {
                self = try Endpoint(parsing: "tcp://" + text)
            } catch {
                throw ParseError(input: text, reason: error.reason)
            }
            return
        }
        if text.hasPrefix("unix://") {
            let path = String(text.dropFirst("unix://".count))
            guard !path.isEmpty else { throw ParseError(input: text, reason: "empty socket path") }
            // sun_path holds 108 bytes including the terminating NUL.
            guard path.utf8.count < 108 else { throw ParseError(input: text, reason: "socket path longer than 107 bytes") }
            self = .unix(path: path)
            return
        }
        let isTLS = text.hasPrefix("tls://")
        guard text.hasPrefix("tcp://") || isTLS else { throw ParseError(input: text, reason: "unknown scheme") }
        let rest = Substring(text.dropFirst("tcp://".count))
        let host: Substring
        let portText: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw ParseError(input: text, reason: "missing ']'") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            guard after.hasPrefix(":") else { throw ParseError(input: text, reason: "missing ':PORT'") }
            portText = after.dropFirst()
            guard host.contains(":") else { throw ParseError(input: text, reason: "brackets are for IPv6 addresses") }
        } else {
            guard let colon = rest.lastIndex(of: ":") else { throw ParseError(input: text, reason: "missing ':PORT'") }
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
            if host.contains(":") { throw ParseError(input: text, reason: "IPv6 addresses go in brackets") }
        }
        guard !host.isEmpty else { throw ParseError(input: text, reason: "empty host") }
        guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = UInt16(portText) else {
            throw ParseError(input: text, reason: "port must be a number from 0 to 65535")
        }
        self = isTLS ? .tls(host: String(host), port: port) : .tcp(host: String(host), port: port)
    }

    /// Whether it is a Unix socket (no TCP options apply).
    public var isUnix: Bool { if case .unix = self { return true } else { return false } }

    /// Whether TLS runs on top of the connection.
    public var isTLS: Bool { if case .tls = self { return true } else { return false } }

    /// The same endpoint with another port (TCP and TLS; a Unix endpoint is returned as it is).
    public func withPort(_ port: UInt16) -> Endpoint {
        switch self {
        case .tcp(let host, _): return .tcp(host: host, port: port)
        case .tls(let host, _): return .tls(host: host, port: port)
        case .unix: return self
        }
    }

    /// Whether only this machine can reach it: a Unix socket, `localhost`, 127.0.0.0/8 or `::1` (also as
    /// `::ffff:127.x.x.x`). Any other host, names included, counts as reachable from outside.
    public var isLoopback: Bool {
        switch self {
        case .unix:
            return true
        case .tcp(let host, _), .tls(let host, _):
            if host.lowercased() == "localhost" { return true }
            guard let address = DeviceAddress.parse(host) else { return false }
            if address.isIPv4 { return (address.low >> 24) & 0xFF == 127 }
            return address.high == 0 && address.low == 1
        }
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port):
            return host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        case .tls(let host, let port):
            return host.contains(":") ? "tls://[\(host)]:\(port)" : "tls://\(host):\(port)"
        case .unix(let path):
            return "unix://\(path)"
        }
    }
}
