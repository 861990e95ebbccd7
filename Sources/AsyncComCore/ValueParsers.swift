// The map's number fields, also read back from replies (`RES` tokens, the HTTP reply): a wait in decimal
// seconds and a response as a signed 64-bit integer. Pure functions over bytes, no allocation, fuzzed
// (Fuzz/FuzzAddress.swift checks `WaitParser` against a reference).

public enum WaitParser {
    public enum Failure: Error, Equatable, Sendable {
        /// Not `digits` or `digits.digits`.
        case invalid
        /// More than 9 decimals: finer than a nanosecond.
        case tooPrecise
        /// Above `DeviceMap.maxWaitNanos`.
        case tooLarge
    }

    /// Seconds as an integer or decimal (`1`, `0.25`, `1.5`, at most 9 decimals) to nanoseconds; nil if invalid
    /// or above `DeviceMap.maxWaitNanos`.
    public static func parseNanos(_ text: UnsafeRawBufferPointer) -> UInt64? {
        if case .success(let v) = parse(text) { return v }
        return nil
    }

    public static func parseNanos(_ text: String) -> UInt64? {
        var s = text
        return s.withUTF8 { parseNanos(UnsafeRawBufferPointer($0)) }
    }

    /// Like `parseNanos`, saying why a wait is rejected. Exact decimal arithmetic: no floating point.
    public static func parse(_ text: UnsafeRawBufferPointer) -> Result<UInt64, Failure> {
        let n = text.count
        var i = 0
        var seconds: UInt64 = 0
        var tooLarge = false
        while i < n, text[i] &- 0x30 < 10 {
            seconds = seconds * 10 + UInt64(text[i] &- 0x30)
            if seconds > 86_400 { tooLarge = true; seconds = 86_401 }  // saturate: no overflow on long inputs
            i += 1
        }
        guard i > 0 else { return .failure(.invalid) }
        var fraction: UInt64 = 0
        var decimals = 0
        if i < n && text[i] == UInt8(ascii: ".") {
            i += 1
            while i < n, text[i] &- 0x30 < 10 {
                if decimals < 9 { fraction = fraction * 10 + UInt64(text[i] &- 0x30) }
                decimals += 1
                i += 1
            }
            guard decimals > 0 else { return .failure(.invalid) }
        }
        guard i == n else { return .failure(.invalid) }
        guard decimals <= 9 else { return .failure(.tooPrecise) }
        guard !tooLarge else { return .failure(.tooLarge) }
        var scale = decimals
        while scale < 9 { fraction *= 10; scale += 1 }
        let nanos = seconds * 1_000_000_000 + fraction
        guard nanos <= DeviceMap.maxWaitNanos else { return .failure(.tooLarge) }
        return .success(nanos)
    }
}

/// Signed 64-bit decimal with an optional sign, as the map's response field.
enum ResponseParser {
    enum Failure: Error { case invalid, outOfRange }

    static func parse(_ text: UnsafeRawBufferPointer) -> Result<Int64, Failure> {
        let n = text.count
        var i = 0
        var negative = false
        if n > 0 && (text[0] == UInt8(ascii: "-") || text[0] == UInt8(ascii: "+")) {
            negative = text[0] == UInt8(ascii: "-")
            i = 1
        }
        guard i < n else { return .failure(.invalid) }
        if n - i <= 18 {
            // Up to 18 digits cannot overflow: the common case needs no overflow checks.
            var value: Int64 = 0
            while i < n {
                let d = text[i] &- 0x30
                guard d < 10 else { return .failure(.invalid) }
                value = value &* 10 &+ Int64(d)
                i += 1
            }
            return .success(negative ? -value : value)
        }
        let limit: UInt64 = negative ? UInt64(Int64.max) + 1 : UInt64(Int64.max)
        var magnitude: UInt64 = 0
        var overflow = false
        while i < n {
            let d = text[i] &- 0x30
            guard d < 10 else { return .failure(.invalid) }
            if !overflow {
                let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(UInt64(d))
                if o1 || o2 || s > limit { overflow = true } else { magnitude = s }
            }
            i += 1
        }
        if overflow { return .failure(.outOfRange) }
        if negative { return .success(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)) }
        return .success(Int64(magnitude))
    }
}
