import CLibevent
import AsyncComCore
import Glibc

/// Non-blocking socket helpers (plain POSIX; every fd returned is O_NONBLOCK and close-on-exec).
public enum Socket {
    private static let streamFlags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        | Int32(SOCK_CLOEXEC.rawValue)

    /// Binds and listens. TCP: SO_REUSEADDR, and SO_REUSEPORT when `reusePort`; resolves `host` (numeric or name)
    /// and uses the first address that binds; IPv6 listeners are IPv6-only. Unix: removes a stale socket file
    /// first (never a file that is not a socket, never one a live server listens on: EADDRINUSE; `reusePort`
    /// does not apply, so reactors must share one Unix listener). Returns the fd.
    public static func listen(_ endpoint: Endpoint, reusePort: Bool, backlog: Int32 = 1024) throws(SystemError) -> Int32 {
        switch endpoint {
        case .tcp(let host, let port), .tls(let host, let port):
            return try listenTCP(host: host, port: port, reusePort: reusePort, backlog: backlog)
        case .unix(let path):
            return try listenUnix(path: path, backlog: backlog)
        }
    }

    private static func listenTCP(host: String, port: UInt16, reusePort: Bool, backlog: Int32) throws(SystemError) -> Int32 {
        let where_ = "\(host):\(port)"
        let addresses = try resolve(host: host, port: port, passive: true)
        defer { freeaddrinfo(addresses) }
        var lastError = SystemError("bind(\(where_))", errno: EADDRNOTAVAIL)
        var ai: UnsafeMutablePointer<addrinfo>? = addresses
        while let info = ai {
            ai = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, streamFlags, 0)
            guard fd >= 0 else { lastError = .last("socket(\(where_))"); continue }
            var on: Int32 = 1
            let size = socklen_t(MemoryLayout<Int32>.size)
            if setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, size) != 0
                || (reusePort && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, size) != 0)
                || (info.pointee.ai_family == AF_INET6
                    && setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &on, size) != 0) {
                lastError = .last("setsockopt(\(where_))")
                Glibc.close(fd)
                continue
            }
            if bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0 {
                lastError = .last("bind(\(where_))")
                Glibc.close(fd)
                continue
            }
            if Glibc.listen(fd, backlog) != 0 {
                lastError = .last("listen(\(where_))")
                Glibc.close(fd)
                continue
            }
            return fd
        }
        throw lastError
    }

    private static func listenUnix(path: String, backlog: Int32) throws(SystemError) -> Int32 {
        var address = try unixAddress(path)
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK {
            // Remove a socket file left by a previous run, but never steal the name of a live server: a connect
            // that is refused means nobody listens any more.
            let probe = socket(AF_UNIX, streamFlags, 0)
            guard probe >= 0 else { throw .last("socket(unix://\(path))") }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
                }
            }
            let probeErrno = Glibc.errno
            Glibc.close(probe)
            if connected || probeErrno == EAGAIN {
                throw SystemError("listen(unix://\(path)): a server is already listening there", errno: EADDRINUSE)
            }
            if probeErrno == ECONNREFUSED { unlink(path) }
        }
        let fd = socket(AF_UNIX, streamFlags, 0)
        guard fd >= 0 else { throw .last("socket(unix://\(path))") }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
        guard ok else {
            let error = SystemError.last("bind(unix://\(path))")
            Glibc.close(fd)
            throw error
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let error = SystemError.last("listen(unix://\(path))")
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// The bound address of a listening or connected socket, as an Endpoint (reads back port 0).
    public static func localEndpoint(fd: Int32) throws(SystemError) -> Endpoint {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { throw .last("getsockname") }
        return try endpoint(of: &storage, length: length)
    }

    /// An IPv4 or IPv6 address (`in_addr`, `in6_addr`) as text.
    private static func addressText<Address>(_ family: Int32, _ address: inout Address, _ size: Int32) -> String {
        var text = [CChar](repeating: 0, count: Int(size))
        _ = withUnsafeBytes(of: &address) { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func endpoint(of storage: inout sockaddr_storage, length: socklen_t) throws(SystemError) -> Endpoint {
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var addr = sin.pointee.sin_addr
                    return .tcp(host: addressText(AF_INET, &addr, INET_ADDRSTRLEN), port: UInt16(bigEndian: sin.pointee.sin_port))
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    var addr = sin6.pointee.sin6_addr
                    return .tcp(host: addressText(AF_INET6, &addr, INET6_ADDRSTRLEN), port: UInt16(bigEndian: sin6.pointee.sin6_port))
                }
            }
        case AF_UNIX:
            let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
            let maxBytes = max(0, Int(length) - pathOffset)
            return withUnsafeBytes(of: &storage) { raw in
                let bytes = raw[pathOffset..<(pathOffset + min(maxBytes, 108))]
                return .unix(path: String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))
            }
        default:
            throw SystemError("getsockname: address family \(storage.ss_family)", errno: EAFNOSUPPORT)
        }
    }

    /// accept4 non-blocking; nil on EAGAIN; throws on other errors (caller logs and continues on EMFILE etc.).
    /// Errors that concern only the one connection being accepted (ECONNABORTED, EINTR, and the pending network
    /// errors Linux reports through accept, see accept(2)) also return nil: the listener is level-triggered, so
    /// any further pending connection makes it readable again.
    public static func accept(fd: Int32) throws(SystemError) -> Int32? {
        let client = asynccom_accept4(fd, nil, nil, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
        if client >= 0 { return client }
        let e = Glibc.errno
        switch e {
        case EAGAIN, EWOULDBLOCK, ECONNABORTED, EINTR, EPROTO, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET,
             EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH:
            return nil
        default:
            throw SystemError("accept4", errno: e)
        }
    }

    /// The addresses of a TCP endpoint, resolved once (getaddrinfo blocks: a client resolves each server once per
    /// job, not at every reconnect attempt on its loop thread).
    public struct ResolvedAddresses: Sendable {
        public let endpoint: Endpoint
        fileprivate let addresses: [(storage: sockaddr_storage, length: socklen_t)]

        /// How many addresses the name resolved to (0 for a Unix endpoint, which needs none).
        public var count: Int { addresses.count }
    }

    /// Resolves a TCP endpoint's host (a Unix endpoint resolves to no address and connects by path).
    public static func resolve(_ endpoint: Endpoint) throws(SystemError) -> ResolvedAddresses {
        let host: String
        let port: UInt16
        switch endpoint {
        case .tcp(let h, let p), .tls(let h, let p): (host, port) = (h, p)
        case .unix: return ResolvedAddresses(endpoint: endpoint, addresses: [])
        }
        let list = try resolve(host: host, port: port, passive: false)
        defer { freeaddrinfo(list) }
        var addresses: [(storage: sockaddr_storage, length: socklen_t)] = []
        var ai: UnsafeMutablePointer<addrinfo>? = list
        while let info = ai {
            ai = info.pointee.ai_next
            var storage = sockaddr_storage()
            let length = min(info.pointee.ai_addrlen, socklen_t(MemoryLayout<sockaddr_storage>.size))
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: Int(length))) }
            addresses.append((storage, length))
        }
        return ResolvedAddresses(endpoint: endpoint, addresses: addresses)
    }

    /// Starts a non-blocking connect; returns the fd (completion: writable, then `connectResult`).
    /// TCP: resolves the host, then as `connect(resolved:)`.
    public static func connect(_ endpoint: Endpoint) throws(SystemError) -> Int32 {
        try connect(resolved: resolve(endpoint))
    }

    /// Starts a non-blocking connect to addresses resolved earlier; returns the fd (completion: writable, then
    /// `connectResult`). TCP: tries the addresses in order until one does not fail at once. Unix: a connect that
    /// cannot complete at once (EAGAIN: backlog full), a missing path or a refused connection throw.
    public static func connect(resolved: ResolvedAddresses) throws(SystemError) -> Int32 {
        switch resolved.endpoint {
        case .tcp(let host, let port), .tls(let host, let port):
            let where_ = "\(host):\(port)"
            var lastError = SystemError("connect(\(where_))", errno: EADDRNOTAVAIL)
            for var address in resolved.addresses {
                let fd = socket(Int32(address.storage.ss_family), streamFlags, 0)
                guard fd >= 0 else { lastError = .last("socket(\(where_))"); continue }
                let started = withUnsafePointer(to: &address.storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) == 0 }
                }
                if started || Glibc.errno == EINPROGRESS { return fd }
                lastError = .last("connect(\(where_))")
                Glibc.close(fd)
            }
            throw lastError
        case .unix(let path):
            var address = try unixAddress(path)
            let fd = socket(AF_UNIX, streamFlags, 0)
            guard fd >= 0 else { throw .last("socket(unix://\(path))") }
            let ok = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
                }
            }
            if ok || Glibc.errno == EINPROGRESS { return fd }
            let error = SystemError.last("connect(unix://\(path))")
            Glibc.close(fd)
            throw error
        }
    }

    /// SO_ERROR of a socket after a non-blocking connect: 0 when connected.
    public static func connectResult(fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { return Glibc.errno }
        return error
    }

    /// TCP_NODELAY; silently ignored on sockets that are not TCP (Unix sockets).
    public static func setNoDelay(fd: Int32) {
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// SO_RCVBUF (the kernel doubles it for its bookkeeping and turns receive-buffer autotuning off for the
    /// socket). Best effort: a failure leaves the kernel's default.
    public static func setReceiveBuffer(fd: Int32, bytes: Int) {
        var size = Int32(clamping: bytes)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// TCP_NOTSENT_LOWAT: the socket takes no more writes (and is not writable) while more than `bytes` of what
    /// was written is not sent yet. Bytes in flight are not counted. Best effort; ignored on Unix sockets.
    public static func setNotSentLowWater(fd: Int32, bytes: Int) {
        var size = Int32(clamping: bytes)
        _ = setsockopt(fd, Int32(IPPROTO_TCP), Int32(TCP_NOTSENT_LOWAT), &size, socklen_t(MemoryLayout<Int32>.size))
    }

    public static func notSentLowWater(fd: Int32) -> Int? {
        var size: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, Int32(IPPROTO_TCP), Int32(TCP_NOTSENT_LOWAT), &size, &length) == 0 else { return nil }
        return Int(size)
    }

    /// SO_RCVBUF as the kernel reports it (twice what was set), or nil.
    public static func receiveBuffer(fd: Int32) -> Int? {
        var size: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, &length) == 0 else { return nil }
        return Int(size)
    }

    /// read(2) into the buffer's writable space (grows it to at least `chunk`). Returns bytes read (0 = EOF),
    /// or nil on EAGAIN; throws on errors such as ECONNRESET.
    public static func read(fd: Int32, into buffer: ByteBuffer, chunk: Int) throws(SystemError) -> Int? {
        buffer.reserveWritable(max(chunk, 1))
        return try read(fd: fd, into: buffer, atMost: buffer.writableBytes)
    }

    /// read(2) of at most `count` bytes (at least 1) into the buffer; returns like `read(fd:into:chunk:)`.
    /// For peers that may send only a little (a connection that has not authenticated yet).
    public static func read(fd: Int32, into buffer: ByteBuffer, atMost count: Int) throws(SystemError) -> Int? {
        buffer.reserveWritable(max(count, 1))
        while true {
            let n = Glibc.read(fd, buffer.writePointer, max(count, 1))
            if n >= 0 {
                buffer.didWrite(n)
                return n
            }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            throw SystemError("read", errno: e)
        }
    }

    /// Asks the kernel to stamp the segments this socket receives (SO_TIMESTAMPNS), for `readStamped`.
    public static func enableReceiveTimestamps(fd: Int32) {
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Like `read`, and also when the newest byte read arrived: the kernel's receive stamp of its segment
    /// (CLOCK_REALTIME nanoseconds; 0 without `enableReceiveTimestamps`). Nil when it would block.
    public static func readStamped(fd: Int32, into buffer: ByteBuffer, chunk: Int) throws(SystemError) -> (count: Int, stamp: Int64)? {
        buffer.reserveWritable(max(chunk, 1))
        var stamp: Int64 = 0
        while true {
            let n = asynccom_recv_stamped(fd, buffer.writePointer, buffer.writableBytes, &stamp)
            if n >= 0 {
                buffer.didWrite(n)
                return (n, stamp)
            }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            throw SystemError("recvmsg", errno: e)
        }
    }

    /// write(2) from the buffer's readable bytes, consuming what was written. Returns bytes written (0 when it
    /// would block); throws on errors such as EPIPE. Sockets are written with MSG_NOSIGNAL, so a closed peer is
    /// an EPIPE error, never a SIGPIPE that kills the process.
    public static func write(fd: Int32, from buffer: ByteBuffer) throws(SystemError) -> Int {
        let count = buffer.readableBytes
        guard count > 0 else { return 0 }
        var useSend = true
        while true {
            let n = useSend
                ? send(fd, buffer.readPointer, count, Int32(MSG_NOSIGNAL))
                : Glibc.write(fd, buffer.readPointer, count)
            if n >= 0 {
                buffer.consume(n)
                return n
            }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return 0 }
            if e == ENOTSOCK && useSend { useSend = false; continue }
            throw SystemError("write", errno: e)
        }
    }

    /// What a readable socket holds, without consuming it: `.closed` at EOF or on an error (the peer is gone),
    /// `.data` when bytes wait to be read, `.nothing` when the readiness was spurious.
    public enum Peek: Sendable, Equatable { case closed, data, nothing }

    public static func peek(fd: Int32) -> Peek {
        var byte: UInt8 = 0
        while true {
            let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            if n > 0 { return .data }
            if n == 0 { return .closed }
            let e = Glibc.errno
            if e == EINTR { continue }
            return e == EAGAIN || e == EWOULDBLOCK ? .nothing : .closed
        }
    }

    /// close(2); not retried on EINTR (on Linux the fd is gone either way).
    public static func close(fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// shutdown(SHUT_WR): tell the peer we are done sending, keep reading.
    public static func shutdownWrite(fd: Int32) {
        _ = shutdown(fd, Int32(SHUT_WR))
    }

    // MARK: - Helpers

    private static func resolve(host: String, port: UInt16, passive: Bool) throws(SystemError) -> UnsafeMutablePointer<addrinfo> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let result else {
            let operation = "getaddrinfo(\(host):\(port))"
            if status == EAI_SYSTEM { throw .last(operation) }
            throw SystemError(operation, errno: EINVAL, message: String(cString: gai_strerror(status)))
        }
        return result
    }

    private static func unixAddress(_ path: String) throws(SystemError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else {
            throw SystemError("unix socket path '\(path)' (1 to \(capacity - 1) bytes)", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }
}
