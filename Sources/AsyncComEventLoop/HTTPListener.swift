import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// The C callback for every request of an `HTTPListener`; `arg` is the unretained listener.
private func httpRequestTrampoline(_ request: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) {
    guard let request else { return }
    let listener = Unmanaged<HTTPListener>.fromOpaque(arg!).takeUnretainedValue()
    listener.dispatch { listener.onRequest(HTTPExchange(request: request)) }
}

/// The C callback run when libevent frees one of the listener's connections.
private func httpCloseTrampoline(_ connection: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) {
    guard let connection else { return }
    let listener = Unmanaged<HTTPListener>.fromOpaque(arg!).takeUnretainedValue()
    listener.dispatch { listener.onClose(connection) }
}

/// A thin layer over libevent's `evhttp` on one `EventLoop`: HTTP/1.1 with keep-alive on listening sockets it is
/// handed, one request at a time per connection (libevent 2.1 reads the next request only after the reply).
///
/// Every request goes to `onRequest`, which may answer at once or keep the `HTTPExchange` and answer later from
/// any callback of the same loop (nothing waits). `onClose` runs when libevent frees a connection (peer gone,
/// idle timeout, error, after a `Connection: close` reply); an exchange of that connection not yet answered is
/// freed with it and must not be used again.
public final class HTTPListener: LoopCallbackTarget {
    public struct Limits: Sendable {
        /// Largest request body; libevent answers a longer one with its own 413 page and closes.
        public var maxBodyBytes: Int
        /// Largest request line plus headers; libevent answers a longer one with its own 400 page and closes.
        public var maxHeaderBytes: Int
        /// Seconds a connection may take to send a request (or sit idle between requests) before it is closed.
        public var timeoutSeconds: Int

        public init(maxBodyBytes: Int, maxHeaderBytes: Int, timeoutSeconds: Int) {
            self.maxBodyBytes = maxBodyBytes
            self.maxHeaderBytes = maxHeaderBytes
            self.timeoutSeconds = timeoutSeconds
        }
    }

    private var http: OpaquePointer?
    private var bound: [OpaquePointer] = []
    fileprivate var onRequest: (HTTPExchange) -> Void
    fileprivate var onClose: (_ connection: OpaquePointer) -> Void

    public init(loop: EventLoop, limits: Limits, onRequest: @escaping (HTTPExchange) -> Void,
                onClose: @escaping (_ connection: OpaquePointer) -> Void) throws(SystemError) {
        self.onRequest = onRequest
        self.onClose = onClose
        super.init(loop: loop)
        guard let http = evhttp_new(loop.base) else { throw SystemError("evhttp_new", errno: ENOMEM) }
        self.http = http
        evhttp_set_max_body_size(http, limits.maxBodyBytes)
        evhttp_set_max_headers_size(http, limits.maxHeaderBytes)
        if limits.timeoutSeconds > 0 { evhttp_set_timeout(http, Int32(clamping: limits.timeoutSeconds)) }
        // Every method reaches the handler, which answers 405 itself (libevent's own answer would be an HTML page).
        let methods = [EVHTTP_REQ_GET, EVHTTP_REQ_POST, EVHTTP_REQ_HEAD, EVHTTP_REQ_PUT, EVHTTP_REQ_DELETE,
                       EVHTTP_REQ_OPTIONS, EVHTTP_REQ_TRACE, EVHTTP_REQ_CONNECT, EVHTTP_REQ_PATCH]
        evhttp_set_allowed_methods(http, UInt16(methods.reduce(0) { $0 | $1.rawValue }))
        evhttp_set_gencb(http, httpRequestTrampoline, callbackArgument)
    }

    deinit { close() }

    /// Serves a listening socket; the listener owns it from now on (closed by `stopAccepting` or `close`).
    public func accept(fd: Int32) throws(SystemError) {
        guard let http else { throw SystemError("evhttp_accept_socket", errno: EBADF) }
        guard let handle = evhttp_accept_socket_with_handle(http, fd) else {
            throw SystemError("evhttp_accept_socket", errno: errno == 0 ? EINVAL : errno)
        }
        bound.append(handle)
    }

    /// Closes the listening sockets; connections already open go on.
    public func stopAccepting() {
        guard let http else { return }
        for handle in bound { evhttp_del_accept_socket(http, handle) }
        bound.removeAll()
    }

    /// Frees every connection (and every exchange not answered yet) and the listening sockets.
    public func close() {
        guard let http else { return }
        bound.removeAll()
        evhttp_free(http)
        self.http = nil
        onRequest = { _ in }
        onClose = { _ in }
    }

    /// Asks for `onClose` when `connection` is freed (once per connection is enough).
    public func watchClose(of connection: OpaquePointer) {
        evhttp_connection_set_closecb(connection, httpCloseTrampoline, callbackArgument)
    }

    /// Closes a connection now, with any exchange of it not answered yet (`onClose` runs first).
    public func closeConnection(_ connection: OpaquePointer) {
        evhttp_connection_free(connection)
    }
}

/// One HTTP request awaiting its reply: valid until `respond` or until its connection is freed.
public struct HTTPExchange: @unchecked Sendable {
    public let request: OpaquePointer

    public enum Method: Sendable, Equatable {
        case get, post, head, other
    }

    public var method: Method {
        switch evhttp_request_get_command(request) {
        case EVHTTP_REQ_GET: .get
        case EVHTTP_REQ_POST: .post
        case EVHTTP_REQ_HEAD: .head
        default: .other
        }
    }

    /// The connection this request came on (its identity for `onClose`).
    public var connection: OpaquePointer? { evhttp_request_get_connection(request) }

    /// The connection's socket.
    public var fd: Int32 {
        guard let connection, let bev = evhttp_connection_get_bufferevent(connection) else { return -1 }
        return bufferevent_getfd(bev)
    }

    /// Calls `body` with the request path (no query, not decoded); empty when libevent could not parse the URI.
    public func withPath<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        guard let uri = evhttp_request_get_evhttp_uri(request), let path = evhttp_uri_get_path(uri) else {
            return body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        return body(UnsafeRawBufferPointer(start: path, count: strlen(path)))
    }

    /// Calls `body` with the value of a request header (nil when absent).
    public func withHeader<R>(_ name: String, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        guard let headers = evhttp_request_get_input_headers(request), let value = evhttp_find_header(headers, name) else {
            return body(nil)
        }
        return body(UnsafeRawBufferPointer(start: value, count: strlen(value)))
    }

    /// The request body in one contiguous, writable block (libevent's own buffer: valid until `respond`).
    public func body() -> UnsafeMutableRawBufferPointer {
        guard let input = evhttp_request_get_input_buffer(request) else {
            return UnsafeMutableRawBufferPointer(start: nil, count: 0)
        }
        let n = evbuffer_get_length(input)
        guard n > 0, let p = evbuffer_pullup(input, -1) else { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        return UnsafeMutableRawBufferPointer(start: p, count: n)
    }

    /// Whether the request announced a body that libevent 2.1 leaves unread: it reads none for HEAD and TRACE,
    /// so those bytes would be parsed as the next request of a kept-alive connection.
    public var leavesBodyUnread: Bool {
        let type = evhttp_request_get_command(request)
        guard type == EVHTTP_REQ_HEAD || type == EVHTTP_REQ_TRACE else { return false }
        return withHeader("Transfer-Encoding") { $0 != nil }
            || withHeader("Content-Length") { value in value.map { !($0.count == 1 && $0[0] == UInt8(ascii: "0")) } ?? false }
    }

    /// Sends the reply; the exchange is finished (and freed by libevent) afterwards. `close` adds
    /// `Connection: close`, so libevent closes the connection once the reply is written (always done when the
    /// request `leavesBodyUnread`). `headers` are extra `(name, value)` pairs.
    public func respond(status: Int, reason: String, contentType: String, body: UnsafeRawBufferPointer,
                        close: Bool = false, headers: [(String, String)] = []) {
        if let out = evhttp_request_get_output_headers(request) {
            evhttp_add_header(out, "Content-Type", contentType)
            for (name, value) in headers { evhttp_add_header(out, name, value) }
            if close || leavesBodyUnread { evhttp_add_header(out, "Connection", "close") }
        }
        // HEAD: the headers only (libevent 2.1 would send the body).
        if evhttp_request_get_command(request) != EVHTTP_REQ_HEAD,
           let output = evhttp_request_get_output_buffer(request), let base = body.baseAddress, body.count > 0 {
            evbuffer_add(output, base, body.count)
        }
        evhttp_send_reply(request, Int32(status), reason, nil)
    }
}
