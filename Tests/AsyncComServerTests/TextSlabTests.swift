import Testing
@testable import AsyncComServer

@Suite("Server: reply texts kept out of order")
struct TextSlabTests {
    private func store(_ slab: TextSlab, _ line: String) -> UInt32 {
        var text = line
        return text.withUTF8 { slab.store(UnsafeRawBufferPointer($0)) }
    }

    private func read(_ slab: TextSlab, _ handle: UInt32) -> String {
        String(decoding: slab.text(handle), as: UTF8.self)
    }

    @Test("texts come back intact whatever the release order, short ones in slots and long ones on their own")
    func randomised() {
        let slab = TextSlab()
        var live: [UInt32: String] = [:]
        var state: UInt64 = 12345
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        for step in 0..<50_000 {
            if live.isEmpty || next() % 3 != 0 {
                // Lengths around the slot size, both sides of it.
                let length = Int(next() % 120) + 1
                let line = "RES \(step) " + String(repeating: "7", count: length) + "\n"
                let handle = store(slab, line)
                #expect(live[handle] == nil, "a handle in use was handed out again")
                live[handle] = line
            } else {
                let handle = live.keys.randomElement()!
                #expect(read(slab, handle) == live[handle])
                slab.release(handle)
                live[handle] = nil
            }
            #expect(slab.count == live.count)
        }
        for (handle, line) in live { #expect(read(slab, handle) == line) }
        for handle in Array(live.keys) { slab.release(handle) }
        #expect(slab.count == 0)
        // Usable again after everything was released (and its memory reset).
        let long = "RES 1 " + String(repeating: "9", count: 200) + "\n"
        let a = store(slab, long)
        let b = store(slab, "RES 2 3\n")
        #expect(read(slab, a) == long && read(slab, b) == "RES 2 3\n")
    }

    @Test("a burst's slots are given back once everything is released")
    func burstIsReturned() {
        let slab = TextSlab()
        let handles = (0..<100_000).map { store(slab, "RES \($0) 1\n") }
        #expect(slab.storageBytes >= 100_000 * TextSlab.slotBytes)
        for h in handles { slab.release(h) }
        #expect(slab.storageBytes == 0)
        let again = store(slab, "RES 1 2\n")
        #expect(read(slab, again) == "RES 1 2\n")
    }
}
