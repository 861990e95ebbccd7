/// Hand-rolled JSON for summaries and result lines: exact `Int128` sums, snake_case keys, fixed decimals, and
/// no Foundation in the library. Strings go through Core's `JSONString`, the one escaping rule.
public enum JSONText {
    /// `value` with exactly `decimals` digits after the point (non-finite values print as 0).
    public static func fixed(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return "0" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e18 else { return value < 0 ? "-\(Int64(abs(value)))" : "\(Int64(min(value, 9e18)))" }
        let n = UInt64(scaled)
        let unit = UInt64(scale)
        var s = value < 0 && n > 0 ? "-" : ""
        s += String(n / unit)
        if decimals > 0 {
            let frac = String(n % unit)
            s += "." + String(repeating: "0", count: decimals - frac.count) + frac
        }
        return s
    }

    static func millis(_ nanos: UInt64) -> String { fixed(Double(nanos) / 1e6, decimals: 3) }
    static func millis(_ nanos: Double) -> String { fixed(nanos / 1e6, decimals: 3) }
}

extension LatencySummary {
    /// `{"p50":..,"p90":..,"p99":..,"max":..,"mean":..}` in milliseconds.
    public var jsonMilliseconds: String {
        "{\"p50\":\(JSONText.millis(p50Nanos)),\"p90\":\(JSONText.millis(p90Nanos)),\"p99\":\(JSONText.millis(p99Nanos)),"
            + "\"max\":\(JSONText.millis(maxNanos)),\"mean\":\(JSONText.millis(meanNanos))}"
    }
}

extension JobSummary {
    /// The summary as one JSON object on one line, keys: `sum` (exact integer), `ok`, `unknown`, `failed`,
    /// `malformed`, `elapsed_s`, `commands_per_s`, `latency_ms` {p50, p90, p99, max, mean}, `requests`,
    /// `retries`, `resends`, `reconnects`, `late_replies`, `bad_replies`, `first_failure` (string or null),
    /// `interrupted`, `not_answered`, and
    /// `servers`: [{`endpoint`, `ok`, `unknown`, `failed`, `requests_sent`, `reconnects`, `connections_lost`,
    /// `timeouts`, `stalls`, `up`, `connections`, `reactors`, `reactors_covered`, `coverage_failed`,
    /// `latency_ms`}].
    public func json() -> String {
        var s = "{\"sum\":\(sum),\"ok\":\(ok),\"unknown\":\(unknown),\"failed\":\(failed),\"malformed\":\(malformed)"
        s += ",\"elapsed_s\":\(JSONText.fixed(elapsedSeconds, decimals: 6))"
        s += ",\"commands_per_s\":\(JSONText.fixed(commandsPerSecond, decimals: 1))"
        s += ",\"latency_ms\":\(latency.jsonMilliseconds)"
        s += ",\"requests\":\(requests),\"retries\":\(retries),\"resends\":\(resends),\"reconnects\":\(reconnects)"
        s += ",\"late_replies\":\(lateReplies),\"bad_replies\":\(badReplies)"
        s += ",\"first_failure\":" + (firstFailure.map(JSONString.quoted) ?? "null")
        s += ",\"interrupted\":\(interrupted),\"not_answered\":\(notAnswered)"
        s += ",\"servers\":["
        for (i, server) in servers.enumerated() {
            if i > 0 { s += "," }
            s += "{\"endpoint\":\(JSONString.quoted(server.endpoint)),\"ok\":\(server.ok),\"unknown\":\(server.unknown)"
            s += ",\"failed\":\(server.failed),\"requests_sent\":\(server.requestsSent),\"reconnects\":\(server.reconnects)"
            s += ",\"connections_lost\":\(server.connectionsLost),\"timeouts\":\(server.timeouts),\"stalls\":\(server.stalls)"
            s += ",\"up\":\(server.upAtEnd),\"connections\":\(server.connections),\"reactors\":\(server.reactors)"
            s += ",\"reactors_covered\":\(server.reactorsCovered),\"coverage_failed\":\(server.coverageFailed)"
            s += ",\"latency_ms\":\(server.latency.jsonMilliseconds)}"
        }
        s += "]}"
        return s
    }
}
