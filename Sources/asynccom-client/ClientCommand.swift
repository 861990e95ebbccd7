import Glibc
import ArgumentParser
import AsyncComCLI
import AsyncComClient
import AsyncComCore
import Logging

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, jsonl
}

@main
struct ClientCommand: AsyncParsableCommand {
    static let configuration = CommandLineTool.configuration(
        "asynccom-client",
        abstract: "Send every command of a commands file to asynccom servers, pipelined, and report each result and the sum.",
        discussion: """
            COMMANDS_FILE holds one `ip:command` per line (IPv4 or IPv6; split at the last colon); blank lines and \
            lines starting with `#` are skipped. `-` reads standard input. The file is streamed: any size runs in \
            bounded memory. Standard input, pipes and FIFOs are read on a thread of their own: a writer that \
            pauses holds up nothing already sent. A malformed line is reported on stderr as `asynccom-client: FILE:LINE: message`, \
            counted as malformed and not sent (`--strict` makes it fatal before anything is sent); after ten, one \
            line says how many more. A file whose every line is malformed exits 2.

            Commands are batched (--batch) into requests. By default the client keeps as many in flight as each \
            server admits (its max_inflight per connection), up to --max-inflight commands in all, over one \
            connection, or one per server reactor once the server stops taking this client's writes for 50 ms (it \
            reads slower than the client writes); --window \
            and --connections set them explicitly. With several --server \
            options, each device's commands go to one server (by a hash of the address); when a server stays \
            unreachable for --connect-timeout its commands fail over to the others. A request with no reply within \
            --timeout is re-sent, up to --retries times; requests in flight on a lost connection are re-sent after \
            reconnecting. A connection with requests pending that hears nothing for --timeout has stalled: its \
            server's work moves to another server at once, or, with none up, fails once the server has failed \
            retries + 1 attempts in a row without answering a request (stalls, HELLO or connect timeouts). A job \
            whose server stalls forever ends within timeout + min(retries x (timeout + 1), connect-timeout + \
            timeout) seconds of its last reply (plus the time to read the rest of the input). Every command is \
            counted exactly once.

            Per-command output (--output FILE, `-` for stdout; --format alone means stdout):
              text   `<item> <result>` per command, in input order; <result> is the decimal response, `unknown`, \
            or `failed <reason>`.
              jsonl  one JSON object per command, in completion order: {"line":N,"device":"...","command":"...", \
            "status":"ok|unknown|failed","value":N (ok only),"error":"..." (failed only),"latency_ms":x}.

            Summary: on stdout (on stderr when the results go to stdout): sum, ok / unknown / failed / malformed counts, \
            elapsed time, commands per second, latency percentiles p50/p90/p99/max, and per server when several. \
            With --json it is one JSON object instead, with the keys sum, ok, unknown, failed, malformed, \
            elapsed_s, commands_per_s, latency_ms {p50, p90, p99, max, mean}, requests, retries, resends, \
            reconnects, late_replies (replies to requests already answered or re-sent), bad_replies, first_failure, \
            interrupted, not_answered and servers [{endpoint, ok, unknown, failed, requests_sent, reconnects, \
            connections_lost, timeouts, stalls, up, connections, reactors (the server's, from HELLO), \
            reactors_covered (how many had a connection), coverage_failed, latency_ms}].

            A progress line (done/known so far, rate, in flight) is shown on stderr when it is a terminal.

            Ctrl-C or SIGTERM stops the job: nothing more is read or sent, every result received is written to \
            --output, and the summary says `interrupted` with the count of commands read but not answered \
            (JSON: interrupted, not_answered). A second signal exits at once.

            Errors that stop the client are one line on stderr: `asynccom-client: error: <message>`.
            Exit status: 0 when every well-formed command was answered (a value or unknown); 1 when any failed \
            (timeouts and retries exhausted, server unreachable, server error) or the results could not be \
            written; 2 for a bad input file (commands file missing or unreadable, a --strict violation, every \
            line malformed; token file; --tls-ca file); 64 for a usage error (bad option or value); 130 / 143 \
            when interrupted by SIGINT / SIGTERM.

            Example:
              asynccom-server --map data/seed/map.txt &
              asynccom-client --batch 16 data/seed/commands.txt
              asynccom-client --server tcp://10.0.0.5:5557 --server tcp://10.0.0.6:5557 \\
                  --output results.txt --json big-commands.txt
            """
    )

    @Option(name: .customLong("server"),
            help: ArgumentHelp("Server to use; repeat for several. tcp://HOST:PORT (or just HOST:PORT), tcp://[IPv6]:PORT, tls://HOST:PORT (verified against --tls-ca or the system's CAs, and the host name) or unix:///path (default: \(Endpoint.defaultURL)).", valueName: "URL"))
    var servers: [String] = []

    @Option(name: .customLong("token-file"),
            help: ArgumentHelp("File holding the token for servers started with --auth-token-file (its first token: a line `token` or `name:token`; # comments). Default: the environment variable ASYNCCOM_TOKEN, if set. Never give a token on the command line: other users can read it there.", valueName: "FILE"))
    var tokenFile: String?

    @Option(name: .customLong("tls-ca"),
            help: ArgumentHelp("CA certificates (PEM) that tls:// servers' certificates must chain to (default: the system's trust store).", valueName: "FILE"))
    var tlsCA: String?

    @Option(help: ArgumentHelp("Commands per request, 1-\(ClientConfiguration.maxBatch); lowered to the server's max_items.", valueName: "N"))
    var batch: Int = ClientConfiguration.defaultBatch

    @Option(help: ArgumentHelp("Requests in flight per connection at most, 1-\(ClientConfiguration.maxWindow) (default: as many as the server's max_inflight admits, within --max-inflight); lowered so window x batch fits max_inflight.", valueName: "N"))
    var window: Int?

    @Option(name: .customLong("max-inflight"),
            help: ArgumentHelp("Commands in flight in the whole job at most: the memory budget (about 40 bytes per command in the client, about 12 in the server), 1-\(ClientConfiguration.maxMaxInflight).", valueName: "N"))
    var maxInflight: Int = ClientConfiguration.defaultMaxInflight

    @Option(help: ArgumentHelp("Connections per server, 1-\(ClientConfiguration.maxConnectionsPerServer) (default: one; one per server reactor once the server stops taking this client's writes for \(Int(ClientConfiguration.serverLagSeconds * 1000)) ms, with a summary warning when some reactor could not be reached; up to \(ClientConfiguration.maxBudgetConnectionsPerServer) when the server's max_inflight per connection binds).", valueName: "N"))
    var connections: Int?

    @Option(help: ArgumentHelp("Seconds to wait for a request's reply before re-sending it; a connection with requests pending that hears nothing for this long counts as stalled. Also bounds connecting and the HELLO handshake.", valueName: "SECONDS"))
    var timeout: Double = ClientConfiguration.defaultRequestTimeout

    @Option(help: ArgumentHelp("Re-sends of a request after a timeout before its commands fail, 0-\(ClientConfiguration.maxRetries).", valueName: "N"))
    var retries: Int = ClientConfiguration.defaultRetries

    @Option(name: .customLong("connect-timeout"),
            help: ArgumentHelp("Seconds to keep reconnecting (backoff 50 ms doubling to 1 s) to a server that is not up, from the start or from when it was last up; then it counts as down.", valueName: "SECONDS"))
    var connectTimeout: Double = ClientConfiguration.defaultConnectTimeout

    @Option(name: .customLong("send-low-water"),
            help: ArgumentHelp("Unsent bytes a TCP connection's kernel buffer may hold (TCP_NOTSENT_LOWAT); more waits in the client, unstamped, so a server that reads slower than the client writes does not make replies look late. 0 keeps the kernel's default.", valueName: "BYTES"))
    var sendLowWater: Int = ClientConfiguration.defaultSendLowWater

    @Option(help: ArgumentHelp("Write one line per command to FILE; `-` for stdout (default: none).", valueName: "FILE"))
    var output: String?

    @Option(help: ArgumentHelp("Per-command output format: text (`<item> <result>`, input order) or jsonl (one object per command, completion order); without --output the results go to stdout (default: text, to --output only).", valueName: "FORMAT"))
    var format: OutputFormat?

    /// Where per-command results go: --output, or stdout when only --format asks for them.
    var resultsPath: String? { output ?? (format != nil ? "-" : nil) }
    var resultsFormat: OutputFormat { format ?? .text }

    @Flag(help: "Print the summary as one JSON object (default: human-readable text).")
    var json = false

    @Flag(help: "Check the whole commands file before sending anything; exit 2 at the first malformed line. Standard input is read into memory first (default: off).")
    var strict = false

    @Flag(help: "No progress line on stderr (default: shown when stderr is a terminal).")
    var quiet = false

    @Option(name: .customLong("log-level"),
            help: ArgumentHelp("Log messages on stderr at this level and above: trace, debug, info, notice, warning, error, critical.", valueName: "LEVEL"))
    var logLevel: LogLevelOption = .warning

    @Argument(help: ArgumentHelp("The commands file, `ip:command` per line; `-` reads standard input.", valueName: "COMMANDS_FILE"))
    var commandsFile: String

    /// The options alone (a usage error, 64); files are read by `execute` (a bad one: 2).
    func validate() throws {
        do {
            var options = clientConfiguration(endpoints: try endpoints(), token: nil)
            options.tlsCAFile = nil
            try options.validate()
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func endpoints() throws -> [Endpoint] { try EndpointOption.parse(servers, option: "--server", fallback: [.default]) }

    func clientConfiguration(endpoints: [Endpoint], token: String?) -> ClientConfiguration {
        var c = ClientConfiguration(servers: endpoints, batch: batch, window: window, connectionsPerServer: connections, maxInflight: maxInflight,
                                    requestTimeout: timeout, retries: retries, connectTimeout: connectTimeout,
                                    ordered: resultsPath != nil && resultsFormat == .text, sendLowWater: sendLowWater)
        c.token = token
        c.tlsCAFile = tlsCA
        return c
    }

    /// The token: from --token-file (errors are FILE:LINE: message), else $ASYNCCOM_TOKEN, else none.
    func token() throws(InputFileError) -> String? {
        if let tokenFile {
            let tokens = try AuthTokens(contentsOfFile: tokenFile)
            return String(decoding: tokens.entries[0].token, as: UTF8.self)
        }
        if let value = getenv("ASYNCCOM_TOKEN") {
            let text = String(cString: value)
            return text.isEmpty ? nil : text
        }
        return nil
    }

    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        await CommandLineTool.main(Self.self)
    }

    func run() async throws {
        let status = await execute()
        // `execute` has reported any error itself.
        if status != ExitStatus.success { throw ExitCode(status) }
    }
}
