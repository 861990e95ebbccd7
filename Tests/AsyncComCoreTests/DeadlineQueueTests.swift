import Testing
@testable import AsyncComCore

@Suite struct DeadlineQueueTests {
    @Test func emptyQueue() {
        var q = DeadlineQueue<Int>()
        #expect(q.isEmpty)
        #expect(q.nextDeadline == nil)
        var popped = 0
        q.popDue(now: .max) { _, _ in popped += 1 }
        #expect(popped == 0)
    }

    @Test func ordersAcrossDelays() {
        var q = DeadlineQueue<String>()
        q.insert(deadline: 100 + 50, delay: 50, payload: "a")
        q.insert(deadline: 101 + 10, delay: 10, payload: "b")
        q.insert(deadline: 102 + 50, delay: 50, payload: "c")
        q.insert(deadline: 103 + 0, delay: 0, payload: "d")
        #expect(q.count == 4)
        #expect(q.nextDeadline == 103)
        var out: [(String, UInt64)] = []
        q.popDue(now: 110) { out.append(($0, $1)) }
        #expect(out.map(\.0) == ["d"])
        q.popDue(now: 151) { out.append(($0, $1)) }
        #expect(out.map(\.0) == ["d", "b", "a"])
        #expect(out.map(\.1) == [103, 111, 150])
        #expect(q.nextDeadline == 152)
        q.popDue(now: 152) { out.append(($0, $1)) }
        #expect(out.map(\.0) == ["d", "b", "a", "c"])
        #expect(q.isEmpty)
        #expect(q.nextDeadline == nil)
    }

    @Test func backwardsDeadlineIsClampedWithinItsDelay() {
        var q = DeadlineQueue<Int>()
        q.insert(deadline: 200, delay: 100, payload: 1)
        q.insert(deadline: 150, delay: 100, payload: 2)  // a clock step back: treated as 200
        var out: [(Int, UInt64)] = []
        q.popDue(now: 199) { out.append(($0, $1)) }
        #expect(out.isEmpty)
        q.popDue(now: 200) { out.append(($0, $1)) }
        #expect(out.map(\.0) == [1, 2])
        #expect(out.map(\.1) == [200, 200])
    }

    @Test func removingEverythingHandsEverythingBackAndTheQueueIsReusable() {
        var q = DeadlineQueue<Int>()
        for i in 0..<100 { q.insert(deadline: UInt64(i) + UInt64(i % 3) * 10, delay: UInt64(i % 3) * 10, payload: i) }
        q.popDue(now: 20) { _, _ in }
        let left = q.count
        var removed: [Int] = []
        #expect(q.removeItems { removed.append($0); return true } == left)
        #expect(removed.count == left)
        #expect(Set(removed).count == left)
        #expect(q.isEmpty && q.nextDeadline == nil)
        q.insert(deadline: 5, delay: 5, payload: 7)
        var again: [Int] = []
        q.popDue(now: 5) { p, _ in again.append(p) }
        #expect(again == [7])
    }

    @Test func largeGroupPartialDrainsCompact() {
        // One delay, drained in small steps while new items keep arriving: exercises the consumed-prefix
        // compaction of a group that never empties.
        var q = DeadlineQueue<Int>()
        var inserted = 0
        for _ in 0..<10_000 { q.insert(deadline: UInt64(inserted), delay: 1, payload: inserted); inserted += 1 }
        var next = 0
        var now: UInt64 = 0
        while next < 30_000 {
            now += 37
            q.popDue(now: now) { p, d in
                #expect(p == next && d == UInt64(p))
                next += 1
            }
            #expect(next == min(Int(now) + 1, inserted))
            for _ in 0..<20 where inserted < 30_000 {
                q.insert(deadline: UInt64(inserted), delay: 1, payload: inserted)
                inserted += 1
            }
            #expect(q.count == inserted - next)
        }
        #expect(q.isEmpty)
    }

    @Test func randomisedAgainstSortedReference() {
        var rng = SplitMix64(seed: 42)
        let delays: [UInt64] = [0, 1, 5, 10, 250, 1000, 1_000_000]
        var q = DeadlineQueue<Int>()
        var pending: [(deadline: UInt64, seq: Int, delay: UInt64)] = []
        var now: UInt64 = 1_000
        var seq = 0
        var lastPopped: UInt64 = 0
        var lastSeqByDelay: [UInt64: Int] = [:]
        for _ in 0..<6_000 {
            now += rng.next() % 7
            if rng.next() % 3 != 0 {
                let delay = delays[Int(rng.next() % UInt64(delays.count))]
                q.insert(deadline: now + delay, delay: delay, payload: seq)
                pending.append((now + delay, seq, delay))
                seq += 1
            } else {
                var got: [(Int, UInt64)] = []
                q.popDue(now: now) { got.append(($0, $1)) }
                let due = pending.filter { $0.deadline <= now }
                pending.removeAll { $0.deadline <= now }
                #expect(got.count == due.count)
                #expect(Set(got.map(\.0)) == Set(due.map(\.seq)))
                // Deadline order, never going back, and each item reports its own deadline.
                let byPayload = Dictionary(uniqueKeysWithValues: due.map { ($0.seq, $0) })
                for (payload, deadline) in got {
                    #expect(deadline >= lastPopped)
                    lastPopped = deadline
                    #expect(byPayload[payload]?.deadline == deadline)
                    // FIFO within a delay.
                    if let d = byPayload[payload]?.delay {
                        #expect(payload > lastSeqByDelay[d, default: -1])
                        lastSeqByDelay[d] = payload
                    }
                }
            }
            #expect(q.count == pending.count)
            #expect(q.nextDeadline == pending.map(\.deadline).min())
        }
    }

    @Test func removeItemsKeepsOrderAndVisitsEachDelayInInsertionOrder() {
        var q = DeadlineQueue<Int>()
        let delays: [UInt64] = [30, 10, 20]
        for i in 0..<3_000 {
            let delay = delays[i % 3]
            q.insert(deadline: UInt64(i) + delay, delay: delay, payload: i)
        }
        q.popDue(now: 500) { _, _ in }  // some consumed already: removal must start at each group's head
        let before = q.count
        var lastByDelay: [Int: Int] = [:]
        let removed = q.removeItems { p in
            // Visited in insertion order within a delay (payload i has delay delays[i % 3]).
            #expect(p > lastByDelay[p % 3, default: -1])
            lastByDelay[p % 3] = p
            return p % 5 != 0
        }
        #expect(q.count == before - removed)
        #expect(lastByDelay.count == 3)
        var out: [(Int, UInt64)] = []
        q.popDue(now: .max) { out.append(($0, $1)) }
        #expect(out.count == before - removed)
        #expect(out.allSatisfy { $0.0 % 5 == 0 && $0.0 >= 470 })
        #expect(zip(out, out.dropFirst()).allSatisfy { $0.1 <= $1.1 }, "deadline order after removal")
        #expect(q.isEmpty && q.nextDeadline == nil)
    }

    @Test func removeItemsThatEmptiesEverythingReleasesStorage() {
        var q = DeadlineQueue<Int>()
        for i in 0..<100_000 { q.insert(deadline: UInt64(i) + 1_000, delay: 1_000, payload: i) }
        q.insert(deadline: 7, delay: 5, payload: -1)
        #expect(q.storageCapacity >= 100_000 * MemoryLayout<UInt64>.size)
        #expect(q.removeItems { $0 >= 0 } == 100_000)
        #expect(q.count == 1 && q.nextDeadline == 7)
        #expect(q.storageCapacity < 4096 * 64, "a big emptied group kept \(q.storageCapacity) bytes")
        // Still fully usable.
        q.insert(deadline: 2_000, delay: 1_000, payload: 1)
        var out: [Int] = []
        q.popDue(now: .max) { p, _ in out.append(p) }
        #expect(out == [-1, 1])
    }

    @Test func removeItemsShrinksAMostlyRemovedGroup() {
        var q = DeadlineQueue<Int>()
        for i in 0..<100_000 { q.insert(deadline: UInt64(i), delay: 1, payload: i) }
        let full = q.storageCapacity
        q.removeItems { $0 % 100 != 0 }
        #expect(q.count == 1_000)
        #expect(q.storageCapacity * 10 < full)
        var n = 0
        q.popDue(now: .max) { p, _ in #expect(p == n * 100); n += 1 }
        #expect(n == 1_000)
    }

    @Test func emptiedGroupsReleaseStorageWhenThereAreManyDelays() {
        // More distinct delays than there are groups (the rest go to the overflow heap), each used by 2,000 items
        // once and then drained: an emptied group keeps at most `keptEntries` (1,024) entries and the overflow
        // heap gives its storage back, so nothing is held afterwards. (1,000 delays took 15 s in a debug build
        // and tested nothing more: only 64 of them have groups.)
        var q = DeadlineQueue<Int>()
        var now: UInt64 = 0
        for d in 1...(DeadlineQueue<Int>.maxGroups + 16) {
            for i in 0..<2_000 { q.insert(deadline: now + UInt64(d), delay: UInt64(d), payload: i) }
            now += 1
        }
        q.popDue(now: .max) { _, _ in }
        #expect(q.isEmpty)
        #expect(q.storageCapacity == 0, "emptied groups kept \(q.storageCapacity) bytes")

        // With a few delays, an emptied group keeps a modest array for the next burst (no reallocation churn).
        var few = DeadlineQueue<Int>()
        for i in 0..<1_000 { few.insert(deadline: UInt64(i), delay: UInt64(i % 4), payload: i) }
        few.popDue(now: .max) { _, _ in }
        #expect(few.isEmpty)
        #expect(few.storageCapacity > 0)
        #expect(few.storageCapacity <= 4 * 4096 * 16)
    }

    @Test func manyDistinctDelaysOverflowAndStayInDeadlineOrder() {
        // 1,000 distinct delays: 64 get FIFO groups, the rest go to the overflow heap. Popped in deadline order
        // whatever the mix, FIFO within a grouped delay, every item once.
        var rng = SplitMix64(seed: 7)
        var q = DeadlineQueue<Int>()
        var pending: [Int: (deadline: UInt64, delay: UInt64)] = [:]
        var now: UInt64 = 0
        var lastPopped: UInt64 = 0
        var seq = 0
        var popped = 0
        for round in 0..<200 {
            for _ in 0..<100 {
                now += rng.next() % 3
                let delay = 1 + rng.next() % 1_000
                q.insert(deadline: now + delay, delay: delay, payload: seq)
                pending[seq] = (now + delay, delay)
                seq += 1
            }
            #expect(q.nextDeadline == pending.values.map(\.deadline).min())
            let upTo = round == 199 ? UInt64.max : now
            q.popDue(now: upTo) { payload, deadline in
                #expect(deadline >= lastPopped, "deadline order")
                lastPopped = deadline
                #expect(pending.removeValue(forKey: payload)?.deadline == deadline)
                #expect(deadline <= upTo)
                popped += 1
            }
            #expect(!pending.values.contains { $0.deadline <= upTo }, "everything due was popped")
            #expect(q.count == pending.count)
        }
        #expect(popped == seq && q.isEmpty && q.nextDeadline == nil)
        #expect(q.groups.count == DeadlineQueue<Int>.maxGroups)
    }

    @Test func emptiedGroupsAreTakenOverByNewDelays() {
        var q = DeadlineQueue<Int>()
        let max = DeadlineQueue<Int>.maxGroups
        for d in 1...max { q.insert(deadline: UInt64(d), delay: UInt64(d), payload: d) }
        q.insert(deadline: 100, delay: 1, payload: 0)  // delay 1 keeps its group busy
        #expect(q.group(forDelay: 1_000) == nil, "every group is set up for another delay")
        // Draining empties the others: a new delay takes one over, the busy one is never taken.
        q.popDue(now: UInt64(max)) { _, _ in }
        #expect(q.count == 1)
        let g = q.group(forDelay: 1_000)
        #expect(g != nil && g != q.group(forDelay: 1))
        q.popDue(now: .max) { _, _ in }
        // A delay that empties and refills forever lists its group as idle once, not once per emptying.
        for i in 0..<10_000 {
            q.insert(deadline: UInt64(i), delay: 5, payload: i)
            q.popDue(now: UInt64(i)) { _, _ in }
        }
        #expect(q.idleGroups.count <= max)
    }

    @Test func removeItemsCoversTheOverflowHeap() {
        var q = DeadlineQueue<Int>()
        for i in 0..<5_000 { q.insert(deadline: UInt64(i % 977) * 3, delay: UInt64(i % 500), payload: i) }
        #expect(q.overflow.count > 0)
        var seen = Set<Int>()
        let removed = q.removeItems { p in
            #expect(seen.insert(p).inserted, "each item visited once")
            return p % 2 == 1
        }
        #expect(seen.count == 5_000 && removed == 2_500 && q.count == 2_500)
        var out: [(Int, UInt64)] = []
        q.popDue(now: .max) { out.append(($0, $1)) }
        #expect(out.count == 2_500 && out.allSatisfy { $0.0 % 2 == 0 })
        #expect(zip(out, out.dropFirst()).allSatisfy { $0.1 <= $1.1 })
    }
}
