import Testing
@testable import AsyncComServer

@Suite("Server: pending replies and their reclaim")
struct PendingRepliesTests {
    /// Queues `count` replies alternating between a live slot (1) and a doomed one (2), over two delays.
    func fill(_ pending: PendingReplies, count: Int) -> [String] {
        var liveLines: [String] = []
        for i in 0..<count {
            let slot: UInt32 = i % 3 == 0 ? 1 : 2
            let delay: UInt64 = i % 2 == 0 ? 1_000 : 5_000
            var line = "RES \(i) \(String(repeating: "9", count: i % 7 + 1))\n"
            if slot == 1 { liveLines.append(line) }
            line.withUTF8 { bytes in
                pending.insert(line: UnsafeRawBufferPointer(bytes), deadline: UInt64(i) + delay, delay: delay,
                               slot: slot, generation: 0, commands: 1)
            }
        }
        return liveLines
    }

    @Test("reclaim drops exactly the stale replies and keeps the live ones intact, in due order")
    func reclaimKeepsLiveReplies() {
        let pending = PendingReplies()
        let liveLines = fill(pending, count: 60_000)
        let doomedCount = 60_000 - liveLines.count
        let doomedBytes = pending.storedBytes - liveLines.reduce(0) { $0 + $1.utf8.count }
        pending.abandon(replies: doomedCount, bytes: doomedBytes)
        #expect(pending.shouldReclaim)
        pending.reclaim { $0.slot == 1 }
        #expect(pending.count == liveLines.count)
        #expect(pending.storedBytes == liveLines.reduce(0) { $0 + $1.utf8.count })
        #expect(pending.staleCount == 0 && pending.staleBytes == 0)
        #expect(!pending.shouldReclaim)

        var popped: [(UInt64, String)] = []
        pending.popDue(now: .max) { ref, deadline, line in
            #expect(ref.slot == 1)
            popped.append((deadline, String(decoding: line, as: UTF8.self)))
            return true
        }
        #expect(popped.count == liveLines.count)
        #expect(Set(popped.map(\.1)) == Set(liveLines))
        #expect(zip(popped, popped.dropFirst()).allSatisfy { $0.0 <= $1.0 })
        // Each line comes back with its own deadline (i + delay, i read back from the line).
        for (deadline, line) in popped {
            let i = UInt64(line.split(separator: " ")[1])!
            #expect(deadline == i + (i % 2 == 0 ? 1_000 : 5_000))
        }
        #expect(pending.count == 0 && pending.storedBytes == 0)
    }

    @Test("a few stale replies are not worth a pass; stale replies popped when due are counted out")
    func smallStaleSetExpiresOnItsOwn() {
        let pending = PendingReplies()
        let liveLines = fill(pending, count: 300)
        let doomedBytes = pending.storedBytes - liveLines.reduce(0) { $0 + $1.utf8.count }
        pending.abandon(replies: 300 - liveLines.count, bytes: doomedBytes)
        #expect(!pending.shouldReclaim, "below the floor a reclaim pass costs more than it frees")
        var delivered = 0
        pending.popDue(now: .max) { ref, _, _ in
            if ref.slot == 2 { return false }
            delivered += 1
            return true
        }
        #expect(delivered == liveLines.count)
        #expect(pending.staleCount == 0 && pending.staleBytes == 0 && pending.storedBytes == 0)
    }

    @Test("no reclaim while live replies are the majority")
    func noReclaimWhileMostlyLive() {
        let pending = PendingReplies()
        _ = fill(pending, count: 90_000)
        // A third of the replies and of their bytes go stale: still less than half, no pass.
        let third = pending.storedBytes / 3
        pending.abandon(replies: 30_000, bytes: third)
        #expect(!pending.shouldReclaim)
        // Two thirds: now the pass frees more than it keeps.
        pending.abandon(replies: 30_000, bytes: third)
        #expect(pending.shouldReclaim)
    }

    @Test("replies of many distinct waits (overflow texts) come back intact, in due order, and reclaim frees them")
    func manyDelays() {
        let pending = PendingReplies()
        var lines: [String: UInt64] = [:]
        var doomedBytes = 0
        for i in 0..<20_000 {
            let delay = UInt64(1 + (i * 7919) % 5_000)  // thousands of distinct waits
            let slot: UInt32 = i % 4 == 0 ? 1 : 2
            var line = "RES \(i) \(String(repeating: "7", count: i % 9 + 1))\n"
            if slot == 1 { lines[line] = UInt64(i) + delay } else { doomedBytes += line.utf8.count }
            line.withUTF8 { bytes in
                pending.insert(line: UnsafeRawBufferPointer(bytes), deadline: UInt64(i) + delay, delay: delay,
                               slot: slot, generation: 0, commands: 1)
            }
        }
        pending.abandon(replies: 15_000, bytes: doomedBytes)
        #expect(pending.shouldReclaim)
        pending.reclaim { $0.slot == 1 }
        #expect(pending.count == 5_000)
        #expect(pending.storedBytes == lines.keys.reduce(0) { $0 + $1.utf8.count })
        var last: UInt64 = 0
        var seen = 0
        pending.popDue(now: .max) { ref, deadline, line in
            let text = String(decoding: line, as: UTF8.self)
            #expect(lines[text] == deadline, "\(text) came back with deadline \(deadline)")
            #expect(deadline >= last)
            last = deadline
            seen += 1
            return true
        }
        #expect(seen == 5_000 && pending.count == 0 && pending.storedBytes == 0)
    }
}
