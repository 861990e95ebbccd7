import AsyncComCore
import AsyncComEventLoop
import COpenSSL

#if canImport(Glibc)
import Glibc
#endif

/// A TLS failure: loading certificates, or a handshake or record error, with OpenSSL's reasons.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// `what: reason; reason` from OpenSSL's error queue of this thread (emptied), or `what` alone.
    static func fromQueue(_ what: String) -> TLSError {
        TLSError(TLS.drainErrors().map { "\(what): \($0)" } ?? what)
    }
}

public enum TLS {
    /// OpenSSL's queued error reasons on this thread, oldest first, joined; nil when the queue is empty. Empties it.
    static func drainErrors() -> String? {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            // "error:0A000086:SSL routines::certificate verify failed": keep the words after the last "::" / ":".
            let full = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let reason = full.split(separator: ":", omittingEmptySubsequences: true).last.map(String.init) ?? full
            if !reasons.contains(reason) { reasons.append(reason) }
        }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }
}

/// An `SSL_CTX`: certificates, keys and verification settings shared by many sessions. OpenSSL allows
/// `SSL_new` on one context from several threads, so one context serves every reactor.
public final class TLSContext: @unchecked Sendable {
    let ctx: OpaquePointer

    private init(server: Bool) throws(TLSError) {
        guard let ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()) else {
            throw .fromQueue("SSL_CTX_new")
        }
        self.ctx = ctx
        _ = asynccom_ssl_ctx_set_min_tls12(ctx)
        _ = asynccom_ssl_ctx_set_mode(ctx, asynccom_ssl_mode_partial_moving)
        // A peer that closes without close_notify is an ordinary end of stream here: the protocol has its own
        // end (QUIT/BYE) and replies are matched by id, so a truncation cannot pass for a complete answer.
        asynccom_ssl_ctx_ignore_unexpected_eof(ctx)
    }

    deinit { SSL_CTX_free(ctx) }

    /// A server context: certificate chain and private key (PEM); with `clientCAFile`, clients must present a
    /// certificate signed by one of its CAs (mutual TLS).
    public static func server(certificateFile: String, keyFile: String, clientCAFile: String?) throws(TLSError) -> TLSContext {
        let context = try TLSContext(server: true)
        let ctx = context.ctx
        ERR_clear_error()
        guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
            throw .fromQueue("cannot load the certificate \(certificateFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1 else {
            throw .fromQueue("cannot load the private key \(keyFile)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw .fromQueue("the private key \(keyFile) does not match the certificate \(certificateFile)")
        }
        if let clientCAFile {
            guard SSL_CTX_load_verify_locations(ctx, clientCAFile, nil) == 1,
                  let names = SSL_load_client_CA_file(clientCAFile)
            else {
                throw .fromQueue("cannot load the client CA file \(clientCAFile)")
            }
            SSL_CTX_set_client_CA_list(ctx, names)
            SSL_CTX_set_verify(ctx, asynccom_ssl_verify_require_peer, nil)
        }
        return context
    }

    /// A client context that verifies the server's certificate against `caFile` (PEM), or against the system's
    /// trust store when nil. The host name is checked per session (`makeSession(fd:serverName:)`).
    public static func client(caFile: String?) throws(TLSError) -> TLSContext {
        let context = try TLSContext(server: false)
        let ctx = context.ctx
        ERR_clear_error()
        if let caFile {
            guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                throw .fromQueue("cannot load the CA file \(caFile)")
            }
        } else {
            guard SSL_CTX_set_default_verify_paths(ctx) == 1 else { throw .fromQueue("cannot load the system CA store") }
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        return context
    }

    /// Also present a client certificate (mutual TLS).
    public func useClientCertificate(certificateFile: String, keyFile: String) throws(TLSError) {
        ERR_clear_error()
        guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
            throw .fromQueue("cannot load the certificate \(certificateFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1,
              SSL_CTX_check_private_key(ctx) == 1 else {
            throw .fromQueue("cannot load the private key \(keyFile)")
        }
    }

    /// A session on the connected non-blocking socket `fd` (not owned: the caller closes it). A client session
    /// sends `serverName` (SNI) and requires the certificate to match it (a DNS name, or an IP address).
    public func makeSession(fd: Int32, serverName: String? = nil) throws(TLSError) -> TLSSession {
        ERR_clear_error()
        guard let ssl = SSL_new(ctx) else { throw .fromQueue("SSL_new") }
        let session = TLSSession(ssl: ssl)
        guard SSL_set_fd(ssl, fd) == 1 else { throw .fromQueue("SSL_set_fd") }
        if let serverName {
            SSL_set_connect_state(ssl)
            let param = SSL_get0_param(ssl)
            if DeviceAddress.parse(serverName) != nil {
                guard X509_VERIFY_PARAM_set1_ip_asc(param, serverName) == 1 else {
                    throw .fromQueue("invalid server address \(serverName)")
                }
            } else {
                _ = asynccom_ssl_set_host_name(ssl, serverName)
                X509_VERIFY_PARAM_set_hostflags(param, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                guard X509_VERIFY_PARAM_set1_host(param, serverName, 0) == 1 else {
                    throw .fromQueue("invalid server name \(serverName)")
                }
            }
        } else {
            SSL_set_accept_state(ssl)
        }
        return session
    }
}

/// One TLS connection over a non-blocking socket (OpenSSL's socket BIO on the reactor's own fd). Every call
/// returns at once: a handshake or record that needs the socket to be readable or writable says so, and the
/// caller's event loop calls again when it is.
public final class TLSSession {
    let ssl: OpaquePointer

    public enum Progress: Equatable {
        case done
        case wantRead
        case wantWrite
        case failed(String)
    }

    init(ssl: OpaquePointer) {
        self.ssl = ssl
    }

    deinit { SSL_free(ssl) }

    /// Advances the handshake as far as the socket allows.
    public func handshake() -> Progress {
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .done }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case let e: return .failed(failure(e, "handshake"))
        }
    }

    /// Whether the handshake has finished.
    public var isEstablished: Bool { SSL_is_init_finished(ssl) == 1 }

    /// Decrypts at most `count` bytes into `buffer` (grown to hold them). Returns the bytes read, 0 at the end
    /// of the stream, nil when the socket has nothing for now; throws when the connection failed.
    public func read(into buffer: ByteBuffer, atMost count: Int) throws(SystemError) -> Int? {
        buffer.reserveWritable(max(count, 1))
        let n = SSL_read(ssl, buffer.writePointer, Int32(clamping: max(count, 1)))
        if n > 0 {
            buffer.didWrite(Int(n))
            return Int(n)
        }
        switch SSL_get_error(ssl, n) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return nil
        case SSL_ERROR_ZERO_RETURN: return 0
        case let e: throw SystemError("TLS read", errno: EPROTO, message: failure(e, "read"))
        }
    }

    /// Encrypts and sends what the socket takes of `buffer`'s readable bytes, consuming them. Returns the bytes
    /// sent (0 when the socket is full); throws when the connection failed.
    public func write(from buffer: ByteBuffer) throws(SystemError) -> Int {
        let count = buffer.readableBytes
        guard count > 0 else { return 0 }
        let n = SSL_write(ssl, buffer.readPointer, Int32(clamping: count))
        if n > 0 {
            buffer.consume(Int(n))
            return Int(n)
        }
        switch SSL_get_error(ssl, n) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return 0
        case let e: throw SystemError("TLS write", errno: EPIPE, message: failure(e, "write"))
        }
    }

    /// Sends close_notify if the socket takes it now (best effort; the caller then shuts the socket down).
    public func close() {
        if isEstablished { _ = SSL_shutdown(ssl) }
        ERR_clear_error()
    }

    /// Why the last call failed, in words, with the thread's error queue emptied.
    private func failure(_ code: Int32, _ what: String) -> String {
        let e = errno
        if let reasons = TLS.drainErrors() {
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK {
                return "\(reasons) (\(String(cString: X509_verify_cert_error_string(verify))))"
            }
            return reasons
        }
        if code == SSL_ERROR_SYSCALL {
            return e == 0 ? "the peer closed the connection during the TLS \(what)" : String(cString: strerror(e))
        }
        return "TLS \(what) failed (SSL error \(code))"
    }
}
