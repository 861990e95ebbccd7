import Glibc

/// The distinct commands of a device map, each numbered from 0 in order of first appearance.
///
/// Interning is what lets the map's hash table hold a whole key inline, as (address, command id): a lookup then
/// touches one slot of the big table instead of a slot, an entry and the command's bytes. Maps name few distinct
/// commands (`status`, `uptime`, ...), so this table is tiny and stays in the L1 cache; resolving a request's
/// command here first also answers commands the map has never heard of without touching the big table at all.
///
/// Grown while the map loads, read-only afterwards (shared by every reactor). Memory is owned manually and freed
/// with `deallocate()` by the map that owns it.
struct CommandInterner {
    /// Open addressing, linear probing, at most half full: `hash >> 32 << 32 | id + 1`, 0 meaning empty.
    var slots: UnsafeMutablePointer<UInt64>
    var mask: Int
    /// Per id: `offset << 8 | length` into `arena`.
    var spans: UnsafeMutablePointer<UInt64>
    /// Per id: a command of at most 8 bytes as one word (`word(_:_:)`), 0 for longer ones: what `find` compares
    /// a short command with, instead of its bytes.
    var words: UnsafeMutablePointer<UInt64>
    var arena: UnsafeMutablePointer<UInt8>
    var count = 0
    var spanCapacity: Int
    var arenaBytes = 0
    var arenaCapacity: Int

    init() {
        mask = 63
        slots = .allocate(capacity: 64)
        slots.initialize(repeating: 0, count: 64)
        spanCapacity = 32
        spans = .allocate(capacity: 32)
        words = .allocate(capacity: 32)
        arenaCapacity = 1024
        arena = .allocate(capacity: 1024)
    }

    func deallocate() {
        slots.deallocate()
        spans.deallocate()
        words.deallocate()
        arena.deallocate()
    }

    /// The id of a command, or -1 when the map has no such command.
    @inline(__always)
    func find(_ p: UnsafeRawPointer, _ n: Int) -> Int {
        probe(CommandInterner.hash(p, n)) { id in
            let span = spans[id]
            return Int(truncatingIfNeeded: span & 0xFF) == n
                && CommandInterner.equal(UnsafeRawPointer(arena + Int(truncatingIfNeeded: span >> 8)), p, n)
        }
    }

    /// The id whose slot carries `h`'s tag and that `matches`, walking the slots from `h`'s home; -1 at the first
    /// empty slot. The one probe loop of both `find`s (inlined with its closure into each).
    @inline(__always)
    private func probe(_ h: UInt64, _ matches: (Int) -> Bool) -> Int {
        let tag = h >> 32
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s == 0 { return -1 }
            if s >> 32 == tag {
                let id = Int(truncatingIfNeeded: s & 0xFFFF_FFFF) &- 1
                if matches(id) { return id }
            }
            i = (i &+ 1) & mask
        }
    }

    /// `find` for a command that is the end of a longer run of readable bytes, `before` of them before `p` (the
    /// item around a request's command): a command of at most 8 bytes is then read as one word that ends where
    /// it ends, hashed and compared whole, where `find` reads its bytes one at a time, twice. Same result
    /// (`RequestScanTests`); what it saves is measured in `ServerProtocol.handleRequest`.
    @inline(__always)
    func find(_ p: UnsafeRawPointer, _ n: Int, readableBefore before: Int) -> Int {
        #if _endian(little)
        guard n <= 8 && before &+ n >= 8 else { return find(p, n) }
        let word = p.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self) &>> UInt64(truncatingIfNeeded: (8 &- n) &* 8)
        return probe(CommandInterner.hash(word: word, n)) { id in
            Int(truncatingIfNeeded: spans[id] & 0xFF) == n && words[id] == word
        }
        #else
        return find(p, n)
        #endif
    }

    /// The id of a command, numbering it if it is new. `n` must be 1...ItemSyntax.maxCommandLength.
    mutating func intern(_ p: UnsafeRawPointer, _ n: Int) -> UInt32 {
        let found = find(p, n)
        if found >= 0 { return UInt32(found) }
        if (count + 1) * 2 > mask + 1 { rehash(size: (mask + 1) * 2) }
        if count == spanCapacity {
            spanCapacity *= 2
            let grown = UnsafeMutablePointer<UInt64>.allocate(capacity: spanCapacity)
            grown.update(from: spans, count: count)
            spans.deallocate()
            spans = grown
            let grownWords = UnsafeMutablePointer<UInt64>.allocate(capacity: spanCapacity)
            grownWords.update(from: words, count: count)
            words.deallocate()
            words = grownWords
        }
        if arenaBytes + n > arenaCapacity {
            while arenaBytes + n > arenaCapacity { arenaCapacity *= 2 }
            let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: arenaCapacity)
            grown.update(from: arena, count: arenaBytes)
            arena.deallocate()
            arena = grown
        }
        (arena + arenaBytes).update(from: p.assumingMemoryBound(to: UInt8.self), count: n)
        let id = count
        spans[id] = UInt64(arenaBytes) << 8 | UInt64(n)
        words[id] = n <= 8 ? CommandInterner.word(p, n) : 0
        arenaBytes += n
        count += 1
        insertSlot(hash: CommandInterner.hash(p, n), id: id)
        return UInt32(id)
    }

    private mutating func insertSlot(hash h: UInt64, id: Int) {
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] != 0 { i = (i + 1) & mask }
        slots[i] = (h >> 32) << 32 | UInt64(id + 1)
    }

    private mutating func rehash(size: Int) {
        slots.deallocate()
        slots = .allocate(capacity: size)
        slots.initialize(repeating: 0, count: size)
        mask = size - 1
        for id in 0..<count {
            let (p, n) = bytes(of: id)
            insertSlot(hash: CommandInterner.hash(p, n), id: id)
        }
    }

    func bytes(of id: Int) -> (UnsafeRawPointer, Int) {
        let span = spans[id]
        return (UnsafeRawPointer(arena + Int(span >> 8)), Int(span & 0xFF))
    }

    func string(of id: Int) -> String {
        let (p, n) = bytes(of: id)
        return String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self)
    }

    /// Multiply-xorshift over 8-byte words, murmur3's finaliser at the end (the low bits pick the slot, the high
    /// bits are the tag).
    @inline(__always)
    static func hash(_ p: UnsafeRawPointer, _ n: Int) -> UInt64 {
        var h = UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15
        var i = 0
        while i &+ 8 <= n {
            h = (h ^ p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x94D0_49BB_1331_11EB
            h ^= h >> 31
            i &+= 8
        }
        if i < n {
            h = (h ^ tail(p + i, n &- i)) &* 0x94D0_49BB_1331_11EB
            h ^= h >> 31
        }
        return fmix(h)
    }

    /// `hash(p, n)` of a command of 1-8 bytes given as `word(p, n)`.
    @inline(__always)
    static func hash(word: UInt64, _ n: Int) -> UInt64 {
        var h = UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15
        h = (h ^ word) &* 0x94D0_49BB_1331_11EB
        h ^= h >> 31
        return fmix(h)
    }

    /// The 1-8 bytes at `p` as one word, the first byte lowest (the word `hash` reads; its `tail` below 8).
    @inline(__always)
    static func word(_ p: UnsafeRawPointer, _ count: Int) -> UInt64 {
        count == 8 ? UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)) : tail(p, count)
    }

    /// The 1-7 bytes at `p` as the low bytes of a word.
    @inline(__always)
    static func tail(_ p: UnsafeRawPointer, _ count: Int) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        var k = 0
        while k < count {
            v |= UInt64(p.load(fromByteOffset: k, as: UInt8.self)) << shift
            shift &+= 8
            k &+= 1
        }
        return v
    }

    @inline(__always)
    static func fmix(_ x: UInt64) -> UInt64 {
        var h = x
        h ^= h >> 33
        h &*= 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h &*= 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return h
    }

    /// Byte equality of two short runs, a word at a time (commands are at most 64 bytes: cheaper than memcmp's
    /// call and dispatch).
    @inline(__always)
    static func equal(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
        var i = 0
        while i &+ 8 <= n {
            if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
                return false
            }
            i &+= 8
        }
        while i < n {
            if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
            i &+= 1
        }
        return true
    }
}

/// The distinct waits of a map, numbered so that a hash slot can carry a wait in 16 bits. Up to 65,535 distinct
/// waits are numbered (maps use a handful); entries with a wait beyond that are looked up the slow way.
struct WaitInterner {
    static let maxCount = 0xFFFF
    private var ids: [UInt64: UInt16] = [:]
    private var last: (wait: UInt64, id: UInt16)?
    private(set) var values: [UInt64] = []

    /// The wait's number, or nil when the table is full.
    mutating func intern(_ wait: UInt64) -> UInt16? {
        // Map files list many entries with one wait in a row: skip the dictionary then.
        if let last, last.wait == wait { return last.id }
        let id: UInt16
        if let known = ids[wait] {
            id = known
        } else {
            guard values.count < WaitInterner.maxCount else { return nil }
            id = UInt16(values.count)
            values.append(wait)
            ids[wait] = id
        }
        last = (wait, id)
        return id
    }
}
