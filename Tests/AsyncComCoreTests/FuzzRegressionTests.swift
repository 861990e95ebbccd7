import Testing
@testable import AsyncComCore

/// Inputs found by the libFuzzer targets in Fuzz/ (see Fuzz/README.md), kept so the bugs stay fixed.
@Suite struct FuzzRegressionTests {
    /// fuzz target "reply": a RES with a bad id returned .malformed but left the previous line's results in
    /// `results`, although a RES line is documented to clear them.
    @Test func malformedResWithBadIDClearsResults() {
        var results: [ItemResult] = [.value(-1), .unknown]
        for line in ["RES 1? -3", "RES", "RES x 1", "RES 18446744073709551616 1"] {
            results = [.value(-1), .unknown]
            let reply = withBytes(line) { ClientProtocol.parse(line: $0, results: &results) }
            guard case .malformed = reply else {
                Issue.record("\(line) parsed as \(reply)")
                continue
            }
            #expect(results.isEmpty, "\(line) left \(results)")
        }
    }
}
