import AsyncComEventLoop

/// Every HTTP route of the server, in one table: the one place a request's method and path are looked at.
/// (`Reactor.handleHTTP` resolves the route first; a check that applies to all routes, such as authentication,
/// goes right there, before the dispatch.)
enum HTTPRoute: Equatable, Sendable {
    case commands, reload, metrics, healthz, readyz
    /// No such path.
    case notFound
    /// The path exists, not with this method; `allow` is the `Allow` header.
    case methodNotAllowed(allow: String)

    /// Path, method, route. HEAD is served wherever GET is.
    static let table: [(path: String, method: HTTPExchange.Method, route: HTTPRoute)] = [
        ("/v1/commands", .post, .commands),
        ("/v1/reload", .post, .reload),
        ("/metrics", .get, .metrics),
        ("/healthz", .get, .healthz),
        ("/readyz", .get, .readyz),
    ]

    static func resolve(method: HTTPExchange.Method, path: UnsafeRawBufferPointer) -> HTTPRoute {
        var allowed: [HTTPExchange.Method] = []
        for entry in table where equal(path, entry.path) {
            if entry.method == method || (entry.method == .get && method == .head) { return entry.route }
            allowed.append(entry.method)
        }
        guard !allowed.isEmpty else { return .notFound }
        let names = allowed.flatMap { m -> [String] in m == .get ? ["GET", "HEAD"] : m == .post ? ["POST"] : [] }
        return .methodNotAllowed(allow: names.joined(separator: ", "))
    }

    private static func equal(_ bytes: UnsafeRawBufferPointer, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { $0.count == bytes.count && (bytes.isEmpty || memcmp(bytes.baseAddress!, $0.baseAddress!, bytes.count) == 0) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
