@testable import AsyncComClient
import AsyncComCore
import Testing

@Suite struct SharderTests {
    func devices(_ n: Int) -> [DeviceAddress] { (0..<n).map { DeviceAddress(ipv4: 0x0A00_0000 + UInt32($0)) } }

    @Test func stableAndSpread() {
        let sharder = Sharder(serverCount: 4)
        var counts = [0, 0, 0, 0]
        for d in devices(4000) {
            let key = Sharder.hash(d)
            let s = sharder.pick(key: key) { _ in true }!
            #expect(sharder.pick(key: key) { _ in true } == s)
            #expect(sharder.home(key: key) == s)
            counts[s] += 1
        }
        // Roughly even: each server gets 25% +- 5%.
        for c in counts { #expect(c > 800 && c < 1200, "counts \(counts)") }
    }

    @Test func onlyTheDownServersDevicesMove() {
        let sharder = Sharder(serverCount: 3)
        for d in devices(2000) {
            let key = Sharder.hash(d)
            let home = sharder.pick(key: key) { _ in true }!
            let without1 = sharder.pick(key: key) { $0 != 1 }!
            #expect(without1 != 1)
            if home != 1 { #expect(without1 == home) }
        }
        #expect(sharder.pick(key: 42) { _ in false } == nil)
        #expect(Sharder(serverCount: 1).pick(key: 7) { _ in true } == 0)
    }

    @Test func spellingsOfOneAddressShareAServer() {
        let a = DeviceAddress.parse("::1")!
        let b = DeviceAddress.parse("0:0::1")!
        #expect(Sharder.hash(a) == Sharder.hash(b))
    }
}

@Suite struct RequestTableTests {
    static var none: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    @Test func idsAreUniqueAndLateLookupsFindNothing() {
        let table = RequestTable()
        let a = table.insert(items: Self.none, itemCount: 1, commands: [], server: 0)
        let b = table.insert(items: Self.none, itemCount: 2, commands: [], server: 1)
        let idA = table[a].id
        let idB = table[b].id
        #expect(idA != idB)
        #expect(table.slot(forID: idA) == a)
        #expect(table.count == 2)
        let removed = table.remove(slot: a)
        table.releaseStorage(of: removed)
        #expect(removed.id == idA)
        #expect(table.slot(forID: idA) == nil)
        #expect(!table.isLive(slot: a, id: idA))
        // The slot is reused, under a new id: a late reply for the old id still finds nothing.
        let c = table.insert(items: Self.none, itemCount: 3, commands: [], server: 0)
        #expect(c == a)
        #expect(table[c].id != idA && table[c].id != idB)
        #expect(table.slot(forID: idA) == nil)
        #expect(table.isLive(slot: c, id: table[c].id))
        table[c].epoch = 7
        #expect(table[c].epoch == 7)
        #expect(table.liveSlots.sorted() == [a, b].sorted())
    }

    /// A request's items are a copy in the table's slab: the batch buffer they came from is reused at once.
    @Test func itemsAreCopiedAndStayUntilReleased() {
        let slab = ItemSlab()
        let table = RequestTable(slab: slab)
        let batch = ByteBuffer()
        ItemsCodec.append(item: "10.0.0.1:foo", to: batch)
        let a = table.insert(items: batch.readableView, itemCount: 1, commands: [], server: 0)
        batch.clear()
        ItemsCodec.append(item: "10.0.0.2:barbaz", to: batch)
        let b = table.insert(items: batch.readableView, itemCount: 1, commands: [], server: 0)
        #expect(String(decoding: table[a].items.bytes, as: UTF8.self) == " 10.0.0.1:foo")
        #expect(String(decoding: table[b].items.bytes, as: UTF8.self) == " 10.0.0.2:barbaz")
        #expect(slab.liveBlocks == 2)
        // Removed, the bytes are still there for delivering results, until the storage is released.
        let removed = table.remove(slot: a)
        #expect(String(decoding: removed.items.bytes, as: UTF8.self) == " 10.0.0.1:foo")
        #expect(slab.liveBlocks == 2)
        table.releaseStorage(of: removed)
        #expect(slab.liveBlocks == 1)
    }

    /// A job that ends with requests still in the table (interrupted, aborted) gives their bytes back, and the
    /// slab (with its chunks) goes with the table.
    @Test func theTableGivesEveryBlockBackWhenItGoes() {
        weak var weakSlab: ItemSlab?
        do {
            let slab = ItemSlab()
            weakSlab = slab
            do {
                let table = RequestTable(slab: slab)
                let bytes: [UInt8] = Array(" 10.0.0.1:foo".utf8)
                bytes.withUnsafeBytes { raw in
                    for _ in 0..<100 { _ = table.insert(items: raw, itemCount: 1, commands: [], server: 0) }
                }
                table.releaseStorage(of: table.remove(slot: 5))
                #expect(slab.liveBlocks == 99)
            }
            #expect(slab.liveBlocks == 0)
        }
        #expect(weakSlab == nil)
    }
}

@Suite struct ItemSlabTests {
    func bytes(_ n: Int, _ fill: UInt8) -> [UInt8] { [UInt8](repeating: fill, count: n) }

    func store(_ slab: ItemSlab, _ b: [UInt8]) -> ItemBlock { b.withUnsafeBytes { slab.store($0) } }

    @Test func aReleasedBlockIsReusedForTheSameSizeClass() {
        let slab = ItemSlab()
        let a = store(slab, bytes(100, 1))
        let b = store(slab, bytes(300, 2))
        #expect(Array(a.bytes) == bytes(100, 1))
        #expect(Array(b.bytes) == bytes(300, 2))
        // 100 and 97..128 bytes round up to the same 128-byte block: the freed one comes back.
        slab.release(a)
        let c = store(slab, bytes(120, 3))
        #expect(c.base == a.base)
        #expect(Array(c.bytes) == bytes(120, 3))
        // Another size does not take it.
        slab.release(c)
        let d = store(slab, bytes(200, 4))
        #expect(d.base != c.base)
        #expect(Array(b.bytes) == bytes(300, 2))
        #expect(slab.liveBlocks == 2)
        // Last in, first out within a class.
        let e = store(slab, bytes(128, 5))
        #expect(e.base == c.base)
    }

    @Test func blocksNeverOverlapAndSurviveGrowth() {
        let slab = ItemSlab()
        var blocks: [(ItemBlock, UInt8)] = []
        // ~6 MiB of blocks of assorted sizes: several chunks, the first ones small.
        for i in 0..<40_000 {
            let n = 1 + (i * 7919) % 300
            blocks.append((store(slab, bytes(n, UInt8(truncatingIfNeeded: i))), UInt8(truncatingIfNeeded: i)))
        }
        #expect(slab.chunkBytes > ItemSlab.firstChunkBytes)
        #expect(slab.chunkBytes >= 6 << 20 && slab.chunkBytes < 12 << 20)
        #expect(blocks.allSatisfy { block, fill in block.bytes.allSatisfy { $0 == fill } })
        let sorted = blocks.map(\.0).sorted { $0.base < $1.base }
        #expect((1..<sorted.count).allSatisfy { sorted[$0 - 1].base + sorted[$0 - 1].count <= sorted[$0].base })
        // Releasing all and storing the same again takes no new chunk.
        let held = slab.chunkBytes
        for (block, _) in blocks { slab.release(block) }
        #expect(slab.liveBlocks == 0)
        var again: [ItemBlock] = []
        for i in 0..<40_000 { again.append(store(slab, bytes(1 + (i * 7919) % 300, 7))) }
        #expect(slab.chunkBytes == held)
        for block in again { slab.release(block) }
    }

    @Test func aLargeBlockIsAnAllocationOfItsOwn() {
        let slab = ItemSlab()
        let small = store(slab, bytes(10, 1))
        let held = slab.chunkBytes
        let large = store(slab, bytes(ItemSlab.largeBytes + 1, 2))
        #expect(slab.chunkBytes == held)
        #expect(large.bytes.allSatisfy { $0 == 2 })
        #expect(slab.liveBlocks == 2)
        slab.release(large)
        slab.release(small)
        #expect(slab.liveBlocks == 0)
        // The largest block that still comes from a chunk fits one, even the first.
        let biggest = store(slab, bytes(ItemSlab.largeBytes, 3))
        #expect(biggest.bytes.allSatisfy { $0 == 3 })
        slab.release(biggest)
    }
}

@Suite struct ItemsCodecTests {
    func encode(_ items: [String]) -> ByteBuffer {
        let b = ByteBuffer()
        for i in items { ItemsCodec.append(item: i, to: b) }
        return b
    }

    func split(_ items: [String], maxItems: Int, maxLine: Int) -> [(items: ByteBuffer, indices: Range<Int>)] {
        let b = encode(items)
        return withExtendedLifetime(b) { ItemsCodec.split(b.readableView, maxItems: maxItems, maxLine: maxLine) }
    }

    @Test func encodesLikeTheProtocol() {
        let b = encode(["1.2.3.4:foo", "::1:bar"])
        #expect(b.readableString == " 1.2.3.4:foo ::1:bar")
        #expect(withExtendedLifetime(b) { ItemsCodec.ranges(of: b.readableView).count } == 2)
    }

    @Test func splitByItemCount() {
        let items = (0..<10).map { "10.0.0.\($0):cmd" }
        let chunks = split(items, maxItems: 4, maxLine: 1 << 20)
        #expect(chunks.map(\.indices) == [0..<4, 4..<8, 8..<10])
        #expect(chunks[1].items.readableString == " 10.0.0.4:cmd 10.0.0.5:cmd 10.0.0.6:cmd 10.0.0.7:cmd")
    }

    @Test func splitByLineLength() {
        let items = (0..<6).map { "10.0.0.\($0):cmd" }  // 12 bytes each, 13 with the space
        let maxLine = ItemsCodec.requestOverhead + 13 * 2
        let chunks = split(items, maxItems: 100, maxLine: maxLine)
        #expect(chunks.map(\.indices) == [0..<2, 2..<4, 4..<6])
        for c in chunks { #expect(c.items.readableBytes + ItemsCodec.requestOverhead <= maxLine) }
        // A single item longer than the limit still goes alone rather than looping forever.
        let tiny = split(items, maxItems: 100, maxLine: 5)
        #expect(tiny.count == 6)
    }
}

@Suite struct TimeoutQueueTests {
    func entry(_ deadline: UInt64, _ id: UInt64) -> TimeoutEntry {
        TimeoutEntry(deadline: deadline, slot: Int32(id), epoch: 1, id: id)
    }

    @Test func expiresDueLiveEntriesAndSkipsStaleOnes() {
        var q = TimeoutQueue()
        for i in 1...5 { q.push(entry(UInt64(i * 100), UInt64(i))) }
        var answered: Set<UInt64> = [1, 3]
        let (expired, next) = q.popExpired(now: 350) { !answered.contains($0.id) }
        #expect(expired.map(\.id) == [2])
        #expect(next == 400)
        answered.insert(4)
        #expect(q.trimFront { !answered.contains($0.id) } == 500)
        #expect(q.count == 1)
        let (later, none) = q.popExpired(now: 10_000) { !answered.contains($0.id) }
        #expect(later.map(\.id) == [5])
        #expect(none == nil)
    }

    @Test func drainKeepsSendOrderOfLiveEntries() {
        var q = TimeoutQueue()
        for i in 1...6 { q.push(entry(UInt64(i), UInt64(i))) }
        let live = q.drainLive { $0.id % 2 == 0 }
        #expect(live.map(\.id) == [2, 4, 6])
        #expect(q.count == 0)
    }

    @Test func compactionDropsStaleEntriesOnly() {
        var q = TimeoutQueue()
        for i in 0..<5000 { q.push(entry(UInt64(i), UInt64(i))) }
        q.compactIfNeeded(liveCount: 10) { $0.id >= 4990 }
        #expect(q.count == 10)
        #expect(q.trimFront { $0.id >= 4990 } == 4990)
        // Not worth it below the threshold.
        var small = TimeoutQueue()
        for i in 0..<100 { small.push(entry(UInt64(i), UInt64(i))) }
        small.compactIfNeeded(liveCount: 1) { _ in false }
        #expect(small.count == 100)
    }
}

@Suite struct ReorderRingTests {
    func result(_ seq: Int) -> CommandResult {
        let entry = CommandEntry(device: DeviceAddress(ipv4: 1), item: "0.0.0.1:x", commandStart: 8, line: seq + 1)
        return CommandResult(sequence: seq, entry: entry, outcome: .value(Int64(seq)), server: .default, latencyNanos: 0)
    }

    @Test func deliversInOrderWhateverTheArrivalOrder() {
        var ring = ReorderRing(initialCapacity: 16)
        var out: [Int] = []
        // Arrivals in reverse blocks, with the ring forced to grow past its first capacity.
        let arrivals = Array((0..<40).reversed()) + Array(40..<100).shuffled()
        for s in arrivals {
            ring.insert(result(s))
            ring.drain { out.append($0.sequence) }
        }
        #expect(out == Array(0..<100))
        #expect(ring.base == 100 && ring.held == 0)
        #expect(ring.capacity >= 40)
    }

    @Test func holdsUntilTheOldestArrives() {
        var ring = ReorderRing()
        var out: [Int] = []
        for s in [1, 2, 3] { ring.insert(result(s)) }
        ring.drain { out.append($0.sequence) }
        #expect(out.isEmpty && ring.held == 3)
        ring.insert(result(0))
        ring.drain { out.append($0.sequence) }
        #expect(out == [0, 1, 2, 3])
    }
}

@Suite struct LimitsAndBackoffTests {
    @Test func backoffDoublesToOneSecondAndResets() {
        var b = Backoff()
        let delays = (0..<8).map { _ in b.next() / 1_000_000 }
        #expect(delays == [50, 100, 200, 400, 800, 1000, 1000, 1000])
        b.reset()
        #expect(b.next() == 50_000_000)
    }

    @Test func configurationValidation() {
        #expect(throws: Never.self) { try ClientConfiguration().validate() }
        #expect(throws: Never.self) { try ClientConfiguration(sendLowWater: 0).validate() }
        for bad in [ClientConfiguration(servers: []), ClientConfiguration(batch: 0), ClientConfiguration(window: 0),
                    ClientConfiguration(connectionsPerServer: 0), ClientConfiguration(requestTimeout: 0),
                    ClientConfiguration(retries: -1), ClientConfiguration(connectTimeout: -1),
                    ClientConfiguration(requestTimeout: .nan), ClientConfiguration(sendLowWater: -1),
                    ClientConfiguration(sendLowWater: 2 << 30), ClientConfiguration(maxInflight: 0)] {
            #expect(throws: ClientError.self) { try bad.validate() }
        }
    }
}
