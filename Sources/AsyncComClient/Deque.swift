/// A ring-buffer double-ended queue: O(1) push and pop at both ends, storage reused.
/// Server queues push re-sends at the front; timeout FIFOs only append and pop at the front.
struct Deque<Element> {
    private var storage: [Element?] = []
    private var head = 0
    private(set) var count = 0

    init() {}

    var isEmpty: Bool { count == 0 }
    var capacity: Int { storage.count }

    var first: Element? { count == 0 ? nil : storage[head] }

    subscript(i: Int) -> Element {
        precondition(i >= 0 && i < count)
        return storage[(head + i) & (storage.count - 1)]!
    }

    mutating func append(_ e: Element) {
        if count == storage.count { grow() }
        storage[(head + count) & (storage.count - 1)] = e
        count += 1
    }

    mutating func prepend(_ e: Element) {
        if count == storage.count { grow() }
        head = (head - 1) & (storage.count - 1)
        storage[head] = e
        count += 1
    }

    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let e = storage[head]
        storage[head] = nil
        head = (head + 1) & (storage.count - 1)
        count -= 1
        return e
    }

    mutating func removeAll() {
        storage = []
        head = 0
        count = 0
    }

    /// Elements front to back.
    var elements: [Element] { (0..<count).map { self[$0] } }

    private mutating func grow() {
        // Power-of-two capacity so indices wrap with a mask.
        let newCapacity = Swift.max(16, storage.count * 2)
        var fresh = [Element?](repeating: nil, count: newCapacity)
        for i in 0..<count { fresh[i] = storage[(head + i) & (storage.count - 1)] }
        storage = fresh
        head = 0
    }
}
