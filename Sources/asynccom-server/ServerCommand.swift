import ArgumentParser
import AsyncComCLI
import AsyncComCore
import AsyncComServer
import Logging

#if canImport(Glibc)
import Glibc
#endif

@main
struct ServerCommand: ParsableCommand {
    static let configuration = CommandLineTool.configuration(
        "asynccom-server",
        abstract: "Answer (device, command) lookups from a device map after each command's modelled wait.",
        discussion: """
            Clients send `REQ <id> <ip>:<command> ...` lines and get `RES <id> <result> ...` once the slowest \
            command's wait has passed; replies to different requests come back in any order (see \
            docs/PROTOCOL.md). One reactor thread per core, each with its own event loop and its own listener on \
            the same TCP port (SO_REUSEPORT); a Unix socket is served by reactor 0.

            The map has one `ip:command:response:wait` line per entry (wait in seconds, e.g. 1 or 0.25); blank \
            lines and # comments are allowed. A bad line stops the server before it listens.

            On startup one line `listening on <url>` per endpoint (the real port when 0 was asked), then one \
            line `listening for HTTP on <url>` per --http-listen endpoint, is printed to stdout; logs go to stderr.

            --http-listen adds a JSON API on the same reactors, map and timers: POST /v1/commands with \
            {"items": ["ip:command", ...]} (or text/plain, one item per line) is answered when its slowest item \
            is due with {"results": [...], "sum": N, "unknown": K}; POST /v1/reload reloads like SIGHUP and \
            answers 200, or 422 with FILE:LINE when a file is bad; GET /metrics (Prometheus), /healthz, /readyz \
            (503 while draining). HTTP connections count against --max-connections; --idle-timeout (whole \
            seconds) closes idle ones. See docs/openapi.yaml.

            Examples:
              asynccom-server --map data/seed/map.txt
              asynccom-server --map map.txt --listen tcp://[::]:5557 --listen unix:///tmp/ac.sock
              printf 'HELLO 1\\nREQ 1 137.72.95.0:foo\\nQUIT\\n' | nc 127.0.0.1 5557
              asynccom-server --map data/seed/map.txt --http-listen tcp://127.0.0.1:8080
              curl -d '{"items": ["137.72.95.0:foo"]}' http://127.0.0.1:8080/v1/commands

            Security: with --auth-token-file every connection must first send HELLO 1 token=<token>; \
            anything else gets ERR AUTH_REQUIRED, a wrong token ERR AUTH_FAILED after a short delay, and the \
            connection closes. Protected mode: a non-loopback --listen address needs --auth-token-file \
            (or --insecure, or a tls:// listener with --tls-client-ca), or the server refuses to start. \
            TLS: --listen tls://HOST:PORT with --tls-cert and --tls-key; --tls-client-ca requires client \
            certificates (mutual TLS).

            Signals: SIGINT or SIGTERM stops accepting, sends every in-flight reply when due, closes the \
            connections and exits 0. A second SIGINT/SIGTERM exits at once with status 130. SIGHUP loads the \
            map file again without dropping a connection or a request: a good map is answered from once it \
            is loaded (map_generation in HELLO and STATS goes up, and entries and time are logged); a bad one is \
            logged as FILE:LINE: message, counted in STATS reload_failures, and the old map stays in use. \
            SIGHUP reads --auth-token-file again the same way (new connections use the new tokens). \
            POST /v1/reload (with --http-listen) does the same and answers with the outcome.

            Errors that stop the server are one line on stderr: `asynccom-server: error: <message>` (a bad file: \
            `asynccom-server: error: FILE:LINE: <message>`).
            Exit status: 0 after a clean shutdown; 1 when an endpoint cannot be bound or the open-file limit \
            cannot hold --max-connections; 2 for a bad input file (map, token file, TLS certificate or key); \
            64 for a usage error (bad option, options that do not go together, protected mode); 130 after a \
            second signal.
            """
    )

    static func main() { CommandLineTool.main(Self.self) }

    @Option(name: .long, help: ArgumentHelp("Device map file (ip:command:response:wait lines).", valueName: "file"))
    var map: String

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Endpoint to listen on: tcp://HOST:PORT (or just HOST:PORT), tcp://[IPv6]:PORT, tls://HOST:PORT (needs --tls-cert and --tls-key) or unix:///path; repeatable; port 0 picks a free port. (default: \(Endpoint.defaultURL))",
            valueName: "url"))
    var listen: [String] = []

    @Option(name: .long, help: ArgumentHelp("Reactor threads. (default: the number of CPUs this process may run on, here \(ServerConfiguration.defaultReactors))", valueName: "n"))
    var reactors: Int?

    @Option(name: .long, help: ArgumentHelp("Bind each reactor thread to a CPU of its own, so that two reactors never take turns on one CPU (a scheduler tick, 4 ms, apart) while another is free: on binds reactor i to the i-th CPU the process may run on (round robin); auto does when there is one reactor per such CPU; off (the default) leaves placement to the scheduler. For a host of its own whose clients keep several reactors busy: with two busy reactors, reply lateness p99 fell 2-3x in measurements here, but a client on the same cores lost up to a third of its zero-wait throughput; a client with one connection (the default) keeps one reactor busy, and then neither showed.", valueName: "off|on|auto"))
    var pinReactors: ReactorPinning = .off

    @Option(name: .long, help: ArgumentHelp("Open connections over all reactors; more get ERR BUSY and are closed. Default \(ServerConfiguration.defaultMaxConnections), or fewer when the open-file limit is lower (the server raises its soft RLIMIT_NOFILE to the hard limit; each connection is one file, plus \(FileLimit.reserve) kept for the rest). A value the limit cannot hold is refused.", valueName: "n"))
    var maxConnections: Int?

    @Option(name: .long, help: ArgumentHelp("In-flight commands per connection (1-4294967295) before the server stops reading from it until half have been answered. Each costs about 12 bytes: a connection at the default limit holds about 100 MiB, so the worst case is that times --max-connections; lower either for clients you do not trust.", valueName: "n"))
    var maxInflight: Int = ServerConfiguration.defaultMaxInflightCommands

    @Option(name: .long, help: ArgumentHelp("Longest request line in bytes, terminator included; a longer one gets ERR LINE_TOO_LONG and the connection is closed.", valueName: "bytes"))
    var maxLine: Int = ServerConfiguration.defaultMaxLine

    @Option(name: .long, help: ArgumentHelp("Most items in one REQ.", valueName: "n"))
    var maxItems: Int = ServerConfiguration.defaultMaxItems

    @Option(name: .long, help: ArgumentHelp("Seconds a connection may stay silent with nothing in flight before ERR IDLE_TIMEOUT and close; 0 disables it.", valueName: "seconds"))
    var idleTimeout: Double = ServerConfiguration.defaultIdleTimeout

    @Option(name: .long, help: ArgumentHelp("Unsent reply bytes per connection before the server stops reading from it until half have been sent.", valueName: "bytes"))
    var outputHighWater: Int = ServerConfiguration.defaultOutputHighWater

    @Option(name: .long, help: ArgumentHelp("Kernel receive buffer (SO_RCVBUF) per TCP connection: 0, or 4096 bytes to 1 GiB. A request's wait starts at the kernel's receive stamp of the read that brings it, the newest byte's; a small buffer keeps a fast client from queueing milliseconds of requests behind a busy reactor, where they would share a later stamp. Below 64 KiB, TCP can stall a fast client 200 ms at a time (measured at 16 KiB: replies of the bench's mixed scenario up to 212 ms late). Raise it for distant clients (bandwidth x round trip); 0 keeps the kernel's autotuning.", valueName: "bytes"))
    var receiveBuffer: Int = ServerConfiguration.defaultReceiveBuffer

    @Option(name: .long, help: ArgumentHelp("Least seconds between two firings of a reactor's reply timer: replies due closer together go out in one write, at most this late. 0 answers at every deadline exactly.", valueName: "seconds"))
    var replyCoalescing: Double = ServerConfiguration.defaultReplyCoalescing

    @Option(name: .long, help: ArgumentHelp("Require authentication: a file of tokens, one per line, optionally name:token (16-256 printable characters; # comments). Each connection must then send HELLO 1 token=<token> as its first line.", valueName: "file"))
    var authTokenFile: String?

    @Option(name: .long, help: ArgumentHelp("Seconds a new connection has to authenticate before ERR AUTH_TIMEOUT and close.", valueName: "seconds"))
    var authTimeout: Double = ServerConfiguration.defaultAuthTimeout

    @Option(name: .long, help: ArgumentHelp("Connections still authenticating, over all reactors; they do not count against --max-connections, and more are refused at once.", valueName: "n"))
    var maxUnauthenticated: Int = ServerConfiguration.defaultMaxUnauthenticated

    @Flag(name: .long, help: ArgumentHelp("Allow listening on a non-loopback address without authentication (protected mode refuses it otherwise)."))
    var insecure = false

    @Flag(name: .long, help: ArgumentHelp("Let other asynccom-server processes of this user listen on the same TCP ports (SO_REUSEPORT): the kernel spreads new connections over all of them. Without it a port in use is refused."))
    var sharePort = false

    @Option(name: .long, help: ArgumentHelp("Certificate chain (PEM) for the tls:// listeners.", valueName: "file"))
    var tlsCert: String?

    @Option(name: .long, help: ArgumentHelp("Private key (PEM) of --tls-cert.", valueName: "file"))
    var tlsKey: String?

    @Option(name: .long, help: ArgumentHelp("Mutual TLS: CA certificates (PEM); tls:// clients must present a certificate signed by one of them.", valueName: "file"))
    var tlsClientCa: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Also serve the HTTP API on tcp://HOST:PORT or HOST:PORT (POST /v1/commands, GET /metrics, /healthz, /readyz; docs/openapi.yaml), on every reactor; repeatable; port 0 picks a free port. (default: off)",
            valueName: "url"))
    var httpListen: [String] = []

    @Option(name: .long, help: ArgumentHelp("Largest HTTP request body; a longer one gets 413 and the connection is closed.", valueName: "bytes"))
    var httpMaxBody: Int = ServerConfiguration.defaultHTTPMaxBody

    @Option(name: .long, help: ArgumentHelp("Largest HTTP request line plus headers; longer gets 400 and the connection is closed.", valueName: "bytes"))
    var httpMaxHeaders: Int = ServerConfiguration.defaultHTTPMaxHeaders

    @Option(name: .long, help: ArgumentHelp("Log messages on stderr at this level and above.", valueName: "level"))
    var logLevel: LogLevelOption = .info

    func validate() throws {
        _ = try endpoints()
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if tlsClientCa != nil && tlsCert == nil { throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key") }
        _ = try httpEndpoints()
    }

    private func httpEndpoints() throws -> [Endpoint] { try EndpointOption.parse(httpListen, option: "--http-listen") }

    private func endpoints() throws -> [Endpoint] { try EndpointOption.parse(listen, option: "--listen", fallback: [.default]) }

    func run() throws {
        // Writes to vanished peers must be errors, never a process-killing SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let logger = logLevel.bootstrap(label: "asynccom-server")

        // Each connection is one open file: make room for them, or say why there is none.
        let files = FileLimit.raiseToHard()
        let fileBound = FileLimit.connections(files: files)
        let maxConnections: Int
        if let asked = self.maxConnections {
            guard asked <= fileBound else {
                throw CommandFailure.failure("--max-connections \(asked) needs \(asked + FileLimit.reserve) open files, but the open-file limit (RLIMIT_NOFILE, hard) is \(files): raise it (ulimit -Hn, LimitNOFILE=) or lower --max-connections")
            }
            maxConnections = asked
        } else {
            maxConnections = min(ServerConfiguration.defaultMaxConnections, fileBound)
            if maxConnections < ServerConfiguration.defaultMaxConnections {
                logger.notice("max connections \(maxConnections), not \(ServerConfiguration.defaultMaxConnections): the open-file limit is \(files)")
            }
        }

        // Built in a function of its own, so no local here keeps the start-up map alive after a reload.
        let (server, entries) = try makeServer(logger: logger, maxConnections: maxConnections)
        let runner: ServerRunner
        do {
            runner = try ServerRunner(server: server) { [logger] signal, count in
                let name = signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal \(signal)"
                if count == 1 {
                    logger.notice("\(name): draining in-flight requests, then exiting; send it again to exit at once")
                } else {
                    logger.warning("\(name) again: exiting at once")
                    _exit(130)
                }
            }
        } catch {
            throw CommandFailure.failure("\(error)")
        }
        let endpoints: [Endpoint]
        do {
            endpoints = try runner.start()
        } catch {
            if case .tls = error { throw CommandFailure.badInput("\(error)") }
            throw CommandFailure.failure("\(error)")
        }
        for endpoint in endpoints { print("listening on \(endpoint)") }
        for endpoint in server.httpEndpoints { print("listening for HTTP on \(endpoint)") }
        fflush(nil)  // tests and scripts read these lines through a pipe
        logger.info("asynccom-server started", metadata: [
            "map": "\(map)", "entries": "\(entries)", "reactors": "\(server.configuration.reactors)",
            "endpoints": "\(endpoints.map(\.description).joined(separator: " "))",
        ])
        runner.run()
        var summary: Logger.Metadata = [:]
        for (name, value) in server.stats().summary { summary[name] = "\(value)" }
        logger.info("asynccom-server stopped", metadata: summary)
    }
}

extension ServerCommand {
    /// Loads the map and the token file (a bad one: exit 2) and builds the server; returns it with the map's entry count.
    private func makeServer(logger: Logger, maxConnections: Int) throws -> (Server, Int) {
        let deviceMap: DeviceMap
        do {
            deviceMap = try DeviceMap(contentsOfFile: map)
        } catch {
            throw CommandFailure.badInput("\(error)")
        }
        var tokens: AuthTokens?
        if let authTokenFile {
            do {
                tokens = try AuthTokens(contentsOfFile: authTokenFile)
            } catch {
                throw CommandFailure.badInput("\(error)")
            }
        }
        var configuration = ServerConfiguration(
            map: deviceMap, mapFile: map, endpoints: try endpoints(),
            reactors: reactors ?? ServerConfiguration.defaultReactors,
            maxConnections: maxConnections, maxInflightCommands: maxInflight, maxLine: maxLine,
            maxItems: maxItems, idleTimeout: idleTimeout, outputHighWater: outputHighWater,
            replyCoalescing: replyCoalescing, receiveBuffer: receiveBuffer, authTokens: tokens,
            authTimeout: authTimeout, maxUnauthenticated: maxUnauthenticated, insecure: insecure,
            tls: tlsCert.map { .init(certificateFile: $0, keyFile: tlsKey ?? $0, clientCAFile: tlsClientCa) })
        configuration.authTokenFile = authTokenFile
        configuration.sharePort = sharePort
        configuration.pinReactors = pinReactors
        configuration.httpEndpoints = try httpEndpoints()
        configuration.httpMaxBody = httpMaxBody
        configuration.httpMaxHeaders = httpMaxHeaders
        do {
            try configuration.validate()
        } catch {
            throw CommandFailure.usage(error.description)
        }
        return (Server(configuration: configuration, logger: logger), deviceMap.count)
    }
}

extension ReactorPinning: ExpressibleByArgument {}
