import AsyncComCore
import AsyncComEventLoop
import AsyncComTestSupport
import Foundation
@testable import AsyncComServer
import Testing

/// An HTTP/1.1 response read off a socket.
struct HTTPResponse {
    var status: Int
    var headers: [String: String]  // names lowercased
    var body: String

    var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
    }
    var errorCode: String? { (json?["error"] as? [String: Any])?["code"] as? String }
}

/// A keep-alive HTTP/1.1 client over `LineClient` (every body this server sends ends with a newline).
final class HTTPTestClient {
    let line: LineClient

    init(port: UInt16) throws { line = try LineClient(port: port) }

    func send(_ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:]) throws {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + (body ?? "")
        try line.send(text)
    }

    func response() throws -> HTTPResponse {
        let statusLine = try line.line()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw TestFailure("not an HTTP status line: \(statusLine)")
        }
        var headers: [String: String] = [:]
        while true {
            var h = try line.line()
            if h.hasSuffix("\r") { h.removeLast() }
            if h.isEmpty { break }
            guard let colon = h.firstIndex(of: ":") else { throw TestFailure("bad header \(h)") }
            headers[h[..<colon].lowercased()] = h[h.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        var body: [UInt8] = []
        while body.count < length {
            guard let l = try line.readRawLine() else { throw TestFailure("EOF in a body") }
            body += l + [0x0A]
        }
        return HTTPResponse(status: status, headers: headers, body: String(decoding: body, as: UTF8.self))
    }

    func request(_ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:]) throws -> HTTPResponse {
        try send(method, path, body: body, headers: headers)
        return try response()
    }

    func post(_ items: [String]) throws -> HTTPResponse {
        let body = "{\"items\": [" + items.map { "\"\($0)\"" }.joined(separator: ", ") + "]}"
        return try request("POST", "/v1/commands", body: body, headers: ["Content-Type": "application/json"])
    }
}

/// A server with protocol v1 and HTTP on 127.0.0.1 (ports 0).
func httpServer(reactors: Int = 2, configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> (TestServer, UInt16) {
    let server = try TestServer(map: smallMap, reactors: reactors) { c in
        c.httpEndpoints = [.tcp(host: "127.0.0.1", port: 0)]
        configure(&c)
    }
    guard case .tcp(_, let port)? = server.server.httpEndpoints.first, port != 0 else {
        throw TestFailure("no HTTP endpoint: \(server.server.httpEndpoints)")
    }
    return (server, port)
}

@Suite("HTTP API over real sockets", .machineSlot(timeLimit: .minutes(1)))
struct HTTPServerTests {
    @Test("POST /v1/commands: results in item order when the slowest item is due, sum and unknown; keep-alive")
    func commands() async throws {
        try await blocking {
            let (server, port) = try httpServer()
            defer { server.stop() }
            let client = try HTTPTestClient(port: port)
            let start = monotonicSeconds()
            let r = try client.post(["10.0.0.1:fast", "10.0.0.9:fast", "10.0.0.1:slow", "[::1]:fast"])
            let elapsed = monotonicSeconds() - start
            #expect(r.status == 200)
            #expect(r.headers["content-type"] == "application/json")
            #expect(r.body == "{\"results\":[7,null,30,61],\"sum\":98,\"unknown\":1}\n")
            #expect(elapsed >= 0.3 && elapsed < 5, "answered after \(elapsed) s")
            // Same connection, text/plain, no wait.
            let t = try client.request("POST", "/v1/commands", body: "10.0.0.1:fast\r\n\n10.0.0.2:fast\n",
                                       headers: ["Content-Type": "text/plain; charset=utf-8"])
            #expect(t.status == 200 && t.body == "{\"results\":[7,-1],\"sum\":6,\"unknown\":0}\n")
            // curl's default type for -d is read as JSON.
            let f = try client.request("POST", "/v1/commands", body: #"{"items":["10.0.0.1:fast"]}"#,
                                       headers: ["Content-Type": "application/x-www-form-urlencoded"])
            #expect(f.status == 200 && f.body == "{\"results\":[7],\"sum\":7,\"unknown\":0}\n")
            // Counted with protocol v1's requests, and as HTTP requests.
            let stats = try server.client().stats()
            #expect(stats["requests"] == 3 && stats["commands"] == 7 && stats["unknown"] == 1)
            #expect(stats["http_requests"] == 3)
        }
    }

    @Test("bad requests get the documented status and JSON error, and the server stays up")
    func errors() async throws {
        try await blocking {
            let (server, port) = try httpServer { $0.maxItems = 3; $0.httpMaxBody = 4096 }
            defer { server.stop() }
            let client = try HTTPTestClient(port: port)
            let cases: [(String, Int, String, Int?)] = [
                ("{\"items\": [\"10.0.0.1:fast\", \"10.0.0.300:fast\"]}", 400, "BAD_ITEM", 1),
                ("{\"items\": [\"10.0.0.1:fast\", 7]}", 400, "BAD_ITEM", 1),
                ("{\"items\": []}", 400, "NO_ITEMS", nil),
                ("{\"items\": [\"10.0.0.1:fast\",", 400, "BAD_REQUEST", nil),
                ("{\"item\": []}", 400, "BAD_REQUEST", nil),
                ("{\"items\": [\"10.0.0.1:fast\",\"10.0.0.1:fast\",\"10.0.0.1:fast\",\"10.0.0.1:fast\"]}", 413, "TOO_MANY_ITEMS", 3),
            ]
            for (body, status, code, index) in cases {
                let r = try client.request("POST", "/v1/commands", body: body, headers: ["Content-Type": "application/json"])
                #expect(r.status == status && r.errorCode == code, "\(body): \(r.status) \(r.body)")
                let error = r.json?["error"] as? [String: Any]
                #expect(error?["index"] as? Int == index, "\(body)")
                #expect((error?["message"] as? String)?.isEmpty == false)
            }
            let notFound = try client.request("GET", "/v2/commands")
            #expect(notFound.status == 404 && notFound.errorCode == "NOT_FOUND")
            let wrongMethod = try client.request("GET", "/v1/commands")
            #expect(wrongMethod.status == 405 && wrongMethod.errorCode == "METHOD_NOT_ALLOWED")
            #expect(wrongMethod.headers["allow"] == "POST")
            #expect(try client.request("DELETE", "/metrics").headers["allow"] == "GET, HEAD")
            // Still the same keep-alive connection, still answering.
            #expect(try client.post(["10.0.0.1:fast"]).status == 200)

            // A body over --http-max-body: 413 (libevent's own page) and the connection closes.
            let big = try HTTPTestClient(port: port)
            let tooLarge = try big.request("POST", "/v1/commands", body: String(repeating: " ", count: 5000))
            #expect(tooLarge.status == 413)
            #expect(try big.line.isClosedByPeer())
            // Headers over --http-max-headers (default 8 KiB): 400 (libevent's page) and the connection closes.
            let fat = try HTTPTestClient(port: port)
            #expect(try fat.request("GET", "/healthz", headers: ["X-Pad": String(repeating: "a", count: 10_000)]).status == 400)
            #expect(try fat.line.isClosedByPeer())
            #expect(try client.request("GET", "/healthz").status == 200)
            let stats = try server.client().stats()
            #expect(stats["errors"] == 9, "\(stats)")
        }
    }

    @Test("a HEAD or TRACE with a body (which libevent leaves unread) closes the connection instead of desyncing it")
    func unreadBody() async throws {
        try await blocking {
            let (server, port) = try httpServer()
            defer { server.stop() }
            for method in ["TRACE", "HEAD"] {
                let client = try HTTPTestClient(port: port)
                // The body is a whole request: read as the next one, it would be answered.
                let smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                try client.send(method, "/healthz", body: smuggled)
                let r = try client.response()
                #expect(r.headers["connection"] == "close", "\(method): \(r.headers)")
                if method == "TRACE" { #expect(r.status == 405) }
                if method == "HEAD" { #expect(r.status == 200 && r.body.isEmpty) }
                #expect(try client.line.isClosedByPeer(), "\(method)")
            }
        }
    }

    @Test("a client that hangs up before its reply is due costs nothing afterwards")
    func hangUp() async throws {
        try await blocking {
            let (server, port) = try httpServer()
            defer { server.stop() }
            let observer = try server.client()
            do {
                let client = try HTTPTestClient(port: port)
                try client.send("POST", "/v1/commands", body: #"{"items": ["10.0.0.1:long"]}"#)  // due in 5 s
                #expect(try eventually { try observer.stats()["inflight_requests"] == 1 })
                #expect(try observer.stats()["connections"] == 2)
            }  // closed here
            // Well before the 5 s: the connection, the request and its stored reply are gone.
            let start = monotonicSeconds()
            #expect(try eventually(within: 3) {
                let s = try observer.stats()
                return s["inflight_requests"] == 0 && s["connections"] == 1
            })
            #expect(monotonicSeconds() - start < 4)
            #expect(try HTTPTestClient(port: port).post(["10.0.0.1:fast"]).status == 200)
        }
    }

    @Test("HTTP connections count against --max-connections with protocol v1's")
    func connectionLimit() async throws {
        try await blocking {
            let (server, port) = try httpServer { $0.maxConnections = 2 }
            defer { server.stop() }
            let v1 = try server.client()
            let first = try HTTPTestClient(port: port)
            #expect(try first.request("GET", "/healthz").status == 200)
            let second = try HTTPTestClient(port: port)
            let busy = try second.request("GET", "/healthz")
            #expect(busy.status == 503 && busy.errorCode == "BUSY")
            #expect(try second.line.isClosedByPeer())
            #expect(try v1.stats()["rejected"] == 1)
        }
    }

    @Test("GET /metrics: every counter of the table per reactor, the lateness histogram, map entries, build info")
    func metrics() async throws {
        try await blocking {
            let (server, port) = try httpServer()
            defer { server.stop() }
            let client = try HTTPTestClient(port: port)
            _ = try client.post(["10.0.0.1:slow"])
            let r = try client.request("GET", "/metrics")
            #expect(r.status == 200)
            #expect(r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            for key in StatKey.allCases {
                let name = MetricsText.metricName(key.definition)
                #expect(r.body.contains("# TYPE \(name) "), "\(name)")
                if key.definition.scope == .global {
                    #expect(r.body.contains("\n\(name) "), "\(name)")
                } else {
                    #expect(r.body.contains("\n\(name){reactor=\"0\"} ") && r.body.contains("\n\(name){reactor=\"1\"} "), "\(name)")
                }
            }
            #expect(r.body.contains("asynccom_requests_total{reactor="))
            #expect(r.body.contains("asynccom_late_max_seconds{reactor=\"0\"}"))
            #expect(r.body.contains("# TYPE asynccom_reply_lateness_seconds histogram"))
            #expect(r.body.contains("asynccom_reply_lateness_seconds_bucket{reactor=\"0\",le=\"+Inf\"}"))
            #expect(r.body.contains("\nasynccom_map_entries 7\n"))
            #expect(r.body.contains("\nasynccom_build_info{version=\"1.0.0\"} 1\n"))
            #expect(r.body.contains("\nasynccom_ready 1\n"))
            // One reply was sent late or on time: the histogram's counts add up to it.
            let counts = r.body.split(separator: "\n").filter { $0.hasPrefix("asynccom_reply_lateness_seconds_count") }
            #expect(counts.compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }.reduce(0, +) == 1)
            #expect(try client.request("GET", "/healthz").body == "{\"status\":\"ok\"}\n")
            #expect(try client.request("GET", "/readyz").status == 200)
        }
    }

    @Test("draining: /readyz answers 503, a pending reply still comes (with Connection: close), then the server stops")
    func draining() async throws {
        try await blocking {
            let (server, port) = try httpServer(reactors: 1)
            let busy = try HTTPTestClient(port: port)
            try busy.send("POST", "/v1/commands", body: #"{"items": ["10.0.0.3:second"]}"#)  // due in 1 s
            let probe = try HTTPTestClient(port: port)  // connected, no request yet
            #expect(try eventually { try server.client().stats()["inflight_requests"] == 1 })
            server.server.beginShutdown()
            let ready = try probe.request("GET", "/readyz")
            #expect(ready.status == 503 && ready.body == "{\"status\":\"draining\"}\n")
            #expect(ready.headers["connection"] == "close")
            let reply = try busy.response()
            #expect(reply.status == 200 && reply.body == "{\"results\":[3],\"sum\":3,\"unknown\":0}\n")
            #expect(reply.headers["connection"] == "close")
            #expect(try busy.line.isClosedByPeer())
            server.server.waitUntilStopped()
        }
    }
}

@Suite struct HTTPRouteTests {
    func route(_ method: HTTPExchange.Method, _ path: String) -> HTTPRoute {
        var p = path
        return p.withUTF8 { HTTPRoute.resolve(method: method, path: UnsafeRawBufferPointer($0)) }
    }

    @Test func routes() {
        #expect(route(.post, "/v1/commands") == .commands)
        #expect(route(.get, "/metrics") == .metrics)
        #expect(route(.head, "/healthz") == .healthz)
        #expect(route(.get, "/readyz") == .readyz)
        #expect(route(.get, "/v1/commands") == .methodNotAllowed(allow: "POST"))
        #expect(route(.post, "/metrics") == .methodNotAllowed(allow: "GET, HEAD"))
        #expect(route(.post, "/v1/reload") == .reload)
        #expect(route(.get, "/v1/reload") == .methodNotAllowed(allow: "POST"))
        #expect(route(.get, "/") == .notFound)
        #expect(route(.get, "/metrics/") == .notFound)
    }

    @Test("seconds are printed exactly") func seconds() {
        #expect(MetricsText.seconds(250_000) == "0.00025")
        #expect(MetricsText.seconds(1_000_000_000) == "1")
        #expect(MetricsText.seconds(2_500_000_000) == "2.5")
        #expect(MetricsText.seconds(0) == "0")
    }
}
