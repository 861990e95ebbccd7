import Foundation
import Testing
@testable import AsyncComClient
@testable import AsyncComCore

/// The engine's allocation-free paths must agree with the plain ones they replace.
@Suite struct FastPathTests {
    @Test func idIndexMatchesADictionary() {
        var index = IDIndex()
        var model: [UInt64: Int32] = [:]
        var rng = SystemRandomNumberGenerator()
        var nextID: UInt64 = 1
        var live: [UInt64] = []
        for step in 0..<200_000 {
            // Grow to a few thousand live ids, then shrink, like a window filling and draining.
            let growing = (step / 20_000) % 2 == 0
            if live.isEmpty || (growing ? Int.random(in: 0..<10, using: &rng) < 7 : Int.random(in: 0..<10, using: &rng) < 3) {
                let id = nextID
                nextID += 1
                let slot = Int32.random(in: 0..<1_000_000, using: &rng)
                index.insert(id, slot: slot)
                model[id] = slot
                live.append(id)
            } else {
                let k = Int.random(in: 0..<live.count, using: &rng)
                let id = live[k]
                live.swapAt(k, live.count - 1)
                live.removeLast()
                index.remove(id)
                model[id] = nil
            }
            if step % 997 == 0 {
                #expect(index.count == model.count)
                for id in live.suffix(50) { #expect(index.find(id) == model[id]) }
                #expect(index.find(nextID) == nil)
                #expect(index.find(nextID + 12345) == nil)
            }
        }
        for id in live { #expect(index.find(id) == model[id]) }
        // Removing an id that is not there changes nothing.
        let before = index.count
        index.remove(nextID + 1)
        #expect(index.count == before)
    }

    /// Pulling in place yields the same commands, line numbers and malformed reports as `next()`.
    @Test func inPlacePullMatchesNext() throws {
        var text = "# header\n\n"
        for i in 0..<500 {
            switch i % 7 {
            case 3: text += "  10.0.\(i / 256).\(i % 256):cmd\(i % 5)  \r\n"
            case 5: text += "not an item \(i)\n"
            case 6: text += "[2001:db8::\(String(i, radix: 16))]:c\(i)\n"
            default: text += "10.0.\(i / 256).\(i % 256):cmd\(i % 5)\n"
            }
        }
        text += "10.9.9.9:last"  // no final newline
        let bytes = Array(text.utf8)

        struct Seen: Equatable {
            var device: DeviceAddress
            var item: String
            var commandStart: Int
            var line: Int
        }
        final class Reports: @unchecked Sendable { var errors: [InputFileError] = [] }

        let plainReports = Reports()
        var plain = MemoryCommandSource(bytes: bytes, name: "mem", onMalformed: { plainReports.errors.append($0) })
        var expected: [Seen] = []
        while let e = try plain.next() { expected.append(Seen(device: e.device, item: e.item, commandStart: e.commandStart, line: e.line)) }

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("asynccom-fast-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("commands.txt").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))

        let memoryReports = Reports()
        let fileReports = Reports()
        var sources: [(any InPlaceCommandSource, Reports)] = [
            (MemoryCommandSource(bytes: bytes, name: "mem", onMalformed: { memoryReports.errors.append($0) }), memoryReports),
            (try FileCommandSource(path: path, onMalformed: { fileReports.errors.append($0) }), fileReports),
        ]
        for k in sources.indices {
            var seen: [Seen] = []
            // Odd limits, so that batches end anywhere.
            while true {
                let limit = 1 + seen.count % 13
                let n = try sources[k].0.pull(limit: limit) { device, item, commandStart, line in
                    seen.append(Seen(device: device, item: String(decoding: item, as: UTF8.self), commandStart: commandStart, line: line))
                }
                if n < limit { break }
            }
            #expect(seen == expected)
            #expect(sources[k].0.malformedCount == plain.malformedCount)
            let messages = sources[k].1.errors.map { "\($0.line ?? 0): \($0.message)" }
            #expect(messages == plainReports.errors.map { "\($0.line ?? 0): \($0.message)" })
        }
        #expect(plain.malformedCount == 500 / 7 + (500 % 7 > 5 ? 1 : 0))
    }
}
