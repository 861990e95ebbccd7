import AsyncComCore
import AsyncComEventLoop
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The device map the reactors answer from, with its generation (1 at start, one more per reload).
///
/// A reload publishes a new map here and wakes every reactor; each one switches to it between two events (at the
/// start of its next callback, never inside one, so a request is answered from one map) and reports the
/// generation it switched to. The reloader waits for all of them before it lets go of the old map, so the old
/// map is freed on the reloader's thread, not on a reactor, and one reload at a time keeps memory at most old +
/// new.
final class PublishedMap: Sendable {
    private struct State {
        var map: DeviceMap
        var generation: UInt64
        /// The generation each reactor answers from.
        var adopted: [UInt64]
    }

    private let state: Locked<State>
    /// The latest generation, read by the reactors at every connection event: one relaxed load when nothing
    /// changed.
    let generation = Atomic<UInt64>(1)

    init(_ map: DeviceMap, reactors: Int) {
        state = Locked(State(map: map, generation: 1, adopted: Array(repeating: 1, count: reactors)))
    }

    /// The map to answer from and its generation.
    func current() -> (map: DeviceMap, generation: UInt64) {
        state.withLock { ($0.map, $0.generation) }
    }

    /// Makes `map` the current one; returns the map it replaces (still in use until every reactor has switched).
    func publish(_ map: DeviceMap) -> (old: DeviceMap, generation: UInt64) {
        state.withLock { s in
            let old = s.map
            s.map = map
            s.generation += 1
            generation.store(s.generation, ordering: .releasing)
            return (old, s.generation)
        }
    }

    /// Reactor `index` answers from `generation` now.
    func adopted(reactor index: Int, generation: UInt64) {
        state.withLock { $0.adopted[index] = generation }
    }

    /// Whether every reactor in `running` answers from `generation` or later.
    func adopted(by running: [Int], _ generation: UInt64) -> Bool {
        state.withLock { s in running.allSatisfy { s.adopted[$0] >= generation } }
    }
}

/// What a successful map reload did.
public struct MapReload: Sendable, Equatable {
    /// The generation now answered from (`map_generation` in STATS and HELLO).
    public let generation: UInt64
    public let entries: Int
    /// Loading and validating the file, publishing it and every reactor switching to it.
    public let seconds: Double
}

/// How one reloadable input fared in `Server.reload()`.
public struct ReloadOutcome: Sendable {
    /// What was reloaded: `map` (and further inputs as they become reloadable).
    public let input: String
    /// A one-line summary for people, or the error (`FILE:LINE: message` for a bad file).
    public let result: Result<String, ServerError>
}

extension ReloadOutcome {
    /// `{"reloaded":[{"input":"map","ok":true,"message":"..."},...]}` plus a newline, the body of
    /// `POST /v1/reload`; the message of a failed input is its error (`FILE:LINE: message`). True when every
    /// input reloaded.
    static func appendJSON(_ outcomes: [ReloadOutcome], to buffer: ByteBuffer) -> Bool {
        var allOK = true
        buffer.append("{\"reloaded\":[")
        for (k, o) in outcomes.enumerated() {
            if k > 0 { buffer.append(byte: UInt8(ascii: ",")) }
            buffer.append("{\"input\":")
            JSONString.append(o.input, to: buffer)
            switch o.result {
            case .success(let message):
                buffer.append(",\"ok\":true,\"message\":")
                JSONString.append(message, to: buffer)
            case .failure(let error):
                allOK = false
                buffer.append(",\"ok\":false,\"message\":")
                JSONString.append(error.description, to: buffer)
            }
            buffer.append(byte: UInt8(ascii: "}"))
        }
        buffer.append("]}\n")
        return allOK
    }
}

extension Server {
    /// Reloads every input the server reads from files, each loaded and validated in full on the calling thread
    /// (call it from a thread that is not a reactor, as `ServerRunner` does on SIGHUP; an HTTP `POST /v1/reload`
    /// must hand it to such a thread too) and published only when all of it is good. Today the input is the
    /// device map and, when the server was started with one, the token file (`authTokenFile`).
    /// A new reloadable input adds its step here, so every trigger reloads it too.
    @discardableResult
    public func reload() -> [ReloadOutcome] {
        var outcomes: [ReloadOutcome] = []
        do {
            let r = try reloadMap()
            outcomes.append(ReloadOutcome(
                input: "map",
                result: .success("map generation \(r.generation): \(r.entries) entries in \(formatMillis(r.seconds)) ms")))
        } catch {
            outcomes.append(ReloadOutcome(input: "map", result: .failure(error)))
        }
        if let path = baseConfiguration.authTokenFile {
            outcomes.append(ReloadOutcome(input: "tokens", result: reloadTokens(from: path)))
        }
        return outcomes
    }

    /// Runs `reload()` on the server's serial reload queue (not the calling thread, which may be a reactor or a
    /// signal loop), then calls `completion` with the outcomes on that queue. Reloads from every trigger
    /// (SIGHUP, `POST /v1/reload`) run one after the other, in the order asked.
    public func reloadInBackground(_ completion: @escaping @Sendable ([ReloadOutcome]) -> Void) {
        reloadQueue.async { [self] in completion(reload()) }
    }

    /// Reads the token file again and, when all of it is good, checks new connections against it (admitted
    /// connections stay). A bad file keeps the old tokens, counts `reload_failures` and logs `FILE:LINE: message`.
    private func reloadTokens(from path: String) -> Result<String, ServerError> {
        let tokens: AuthTokens
        do throws(InputFileError) {
            tokens = try AuthTokens(contentsOfFile: path)
        } catch {
            shared.globalCounters.addFromAnyThread(.reloadFailures)
            logger.error("token file reload failed: \(error); still checking the previous tokens")
            return .failure(.reload(error.description))
        }
        replaceTokens(tokens)
        logger.info("tokens reloaded", metadata: ["file": "\(path)", "tokens": "\(tokens.entries.count)"])
        return .success("tokens: \(tokens.entries.count) from \(path)")
    }

    /// Loads `configuration.mapFile` again, validates all of it, and publishes it to every reactor; returns once
    /// every running reactor answers from it and the old map is released. Requests read before a reactor
    /// switches keep the answer they were given; requests read after it see the new map. A bad file keeps the
    /// old map, counts `reload_failures`, logs and throws `FILE:LINE: message`. One reload at a time.
    public func reloadMap() throws(ServerError) -> MapReload {
        let result = reloadLock.withLock { _ -> Result<MapReload, ServerError> in
            guard let path = baseConfiguration.mapFile else {
                return .failure(.reload("the map was not loaded from a file (ServerConfiguration.mapFile): nothing to reload"))
            }
            let start = EventLoop.monotonicNanos()
            let map: DeviceMap
            do throws(InputFileError) {
                map = try DeviceMap(contentsOfFile: path)
            } catch {
                shared.globalCounters.addFromAnyThread(.reloadFailures)
                let generation = shared.maps.current().generation
                logger.error("map reload failed: \(error); still answering from map generation \(generation)")
                return .failure(.reload(error.description))
            }
            let generation = switchMap(to: map)
            let seconds = Double(EventLoop.monotonicNanos() &- start) / 1e9
            let report = MapReload(generation: generation, entries: map.count, seconds: seconds)
            logger.info("map reloaded", metadata: [
                "map": "\(path)", "entries": "\(map.count)", "generation": "\(generation)",
                "ms": "\(formatMillis(seconds))",
            ])
            return .success(report)
        }
        return try result.get()
    }

    /// Publishes an already loaded `map` the way `reloadMap` does (for embedding and tests); returns its
    /// generation.
    @discardableResult
    public func replaceMap(with map: DeviceMap) -> UInt64 {
        reloadLock.withLock { _ in switchMap(to: map) }
    }

    /// Publishes `map`, wakes every reactor and waits until all running ones answer from it. Under `reloadLock`.
    private func switchMap(to map: DeviceMap) -> UInt64 {
        let (old, generation) = shared.maps.publish(map)
        shared.globalCounters.store(.mapGeneration, generation)
        // Held until every reactor has dropped it, so the old map is freed here, not on a reactor.
        withExtendedLifetime(old) {
            // Wake them, so an idle reactor does not hold the old map until its next event.
            let running = shared.control.withLock { c -> [Int] in
                for case let n? in c.notifiers { n.notify() }
                return c.notifiers.indices.filter { c.notifiers[$0] != nil }
            }
            // A reactor switches at its next callback: microseconds, or one callback's work (a few ms) when busy.
            while !shared.maps.adopted(by: running, generation) && !shared.isShutdownRequested {
                usleep(200)
            }
        }
        return generation
    }
}

extension DeviceMap {
    /// A one-entry map standing in for `ServerConfiguration.map` where a stored configuration must not keep the
    /// real map alive.
    static let placeholder: DeviceMap = {
        let text = "0.0.0.0:placeholder:0:0\n"
        return try! text.utf8CString.withUnsafeBytes { raw throws(InputFileError) in
            try DeviceMap(parsing: UnsafeRawBufferPointer(rebasing: raw.dropLast()), fileName: "placeholder")
        }
    }()
}

/// `0.213` seconds as `213.0` (milliseconds, one decimal).
func formatMillis(_ seconds: Double) -> String {
    String(Double((seconds * 10_000).rounded()) / 10)
}
