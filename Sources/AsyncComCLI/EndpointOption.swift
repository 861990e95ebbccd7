import ArgumentParser
import AsyncComCore

/// Endpoint options (`--listen`, `--http-listen`, `--server`): each value parsed by Core's one endpoint parser
/// (`HOST:PORT` means `tcp://HOST:PORT`), a bad one a usage error naming the option.
public enum EndpointOption {
    /// The endpoints of `values` given as `option`; `fallback` when there are none.
    public static func parse(_ values: [String], option: String, fallback: [Endpoint] = []) throws -> [Endpoint] {
        if values.isEmpty { return fallback }
        return try values.map { text in
            do throws(Endpoint.ParseError) {
                return try Endpoint(parsing: text)
            } catch {
                throw ValidationError("\(option): \(error)")
            }
        }
    }
}
