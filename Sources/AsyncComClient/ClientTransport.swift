import AsyncComCore
import AsyncComEventLoop
import AsyncComTLS

/// How a client connection's bytes travel: plain system calls on its socket, or a TLS session (OpenSSL on the
/// same non-blocking fd) for `tls://` servers. `ClientConnection` does its I/O through this seam only.
struct ClientTransport {
    private(set) var tls: TLSSession?

    /// Starts TLS on a connected socket, verifying the server's certificate for `serverName` (its host name or
    /// IP address) against `context`'s CAs.
    mutating func startTLS(fd: Int32, context: TLSContext, serverName: String) throws(TLSError) {
        tls = try context.makeSession(fd: fd, serverName: serverName)
    }

    /// One step of the TLS handshake (`.done` at once for plaintext).
    func handshake() -> TLSSession.Progress {
        tls?.handshake() ?? .done
    }

    /// Reads what is there (at most `chunk` bytes); nil when nothing is. The stamp is the kernel's receive time
    /// of the newest byte (CLOCK_REALTIME ns), 0 when unknown (always over TLS: the session reads the socket).
    @inline(__always)
    func read(fd: Int32, into buffer: ByteBuffer, chunk: Int) throws(SystemError) -> (count: Int, stamp: Int64)? {
        if let tls {
            guard let n = try tls.read(into: buffer, atMost: chunk) else { return nil }
            return (n, 0)
        }
        return try Socket.readStamped(fd: fd, into: buffer, chunk: chunk)
    }

    /// Writes what the socket takes of `buffer`, consuming it.
    @inline(__always)
    func write(fd: Int32, from buffer: ByteBuffer) throws(SystemError) -> Int {
        guard let tls else { return try Socket.write(fd: fd, from: buffer) }
        // A partial TLS write returns after each record (16 KiB): keep writing until the socket is full, or a
        // 64 KiB flush would take four turns of the event loop (the inflight bench's TLS run was 20% slower).
        var total = 0
        while !buffer.isEmpty {
            let n = try tls.write(from: buffer)
            if n == 0 { break }
            total += n
        }
        return total
    }

    /// Drops the session (before the socket is closed).
    mutating func close() {
        tls = nil
    }

    /// The TLS context of a job whose servers include `tls://` ones: `caFile`, or the system's trust store.
    static func context(for configuration: ClientConfiguration) throws(TLSError) -> TLSContext? {
        guard configuration.servers.contains(where: \.isTLS) else { return nil }
        return try TLSContext.client(caFile: configuration.tlsCAFile)
    }
}
