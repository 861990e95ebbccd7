import AsyncComCore
import AsyncComTLS

#if canImport(Glibc)
import Glibc
#endif

/// A blocking line client over TLS (a blocking socket with 10 s timeouts under an OpenSSL session), for the
/// tests of `tls://` listeners.
public final class TLSLineClient {
    /// The TCP connection underneath (it owns the socket).
    public let plain: LineClient
    public let session: TLSSession
    private let input = ByteBuffer(capacity: 65536)
    private let output = ByteBuffer(capacity: 4096)

    /// Connects to 127.0.0.1:`port` and completes the handshake, verifying the server as `serverName`;
    /// throws `TLSError` when the handshake fails.
    public init(port: UInt16, context: TLSContext, serverName: String = "localhost", timeoutSeconds: Int = 10) throws {
        plain = try LineClient(port: port, timeoutSeconds: timeoutSeconds)
        session = try context.makeSession(fd: plain.fd, serverName: serverName)
        switch session.handshake() {
        case .done: break
        case .failed(let reason): throw TLSError(reason)
        case .wantRead, .wantWrite: throw TLSError("handshake timed out")
        }
    }

    public func send(_ text: String) throws {
        output.append(string: text)
        while !output.isEmpty {
            if try session.write(from: output) == 0 { throw TestFailure("TLS write timed out") }
        }
    }

    /// The next line without its LF, or nil at the end of the stream.
    public func readLine() throws -> String? {
        while true {
            let view = input.readableView
            if let lf = view.firstIndex(of: 0x0A) {
                let line = String(decoding: view[..<lf], as: UTF8.self)
                input.consume(lf + 1)
                return line
            }
            guard let n = try session.read(into: input, atMost: 65536) else { throw TestFailure("TLS read timed out") }
            if n == 0 { return nil }
        }
    }

    public func line() throws -> String {
        guard let l = try readLine() else { throw TestFailure("unexpected end of the TLS stream") }
        return l
    }

    public func request(_ text: String) throws -> String {
        try send(text + "\n")
        return try line()
    }
}
