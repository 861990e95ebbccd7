/// Puts results back into input order: a ring indexed by sequence number, from the oldest undelivered one
/// (`base`). The engine stops pulling commands while `newest - base` reaches its span limit, so the ring never
/// holds more than that many results however slow one request is. Storage grows on demand up to the span.
struct ReorderRing {
    private var slots: [CommandResult?]
    private(set) var base = 0
    /// Results held (not yet deliverable).
    private(set) var held = 0

    init(initialCapacity: Int = 1024) {
        var c = 16
        while c < initialCapacity { c *= 2 }
        slots = Array(repeating: nil, count: c)
    }

    var capacity: Int { slots.count }

    /// Stores `result`; its sequence must be at or after `base` and not stored yet.
    mutating func insert(_ result: CommandResult) {
        let offset = result.sequence - base
        precondition(offset >= 0, "result \(result.sequence) delivered twice")
        if offset >= slots.count { grow(toFit: offset) }
        let i = result.sequence & (slots.count - 1)
        precondition(slots[i] == nil, "result \(result.sequence) stored twice")
        slots[i] = result
        held += 1
    }

    /// Hands out every result from `base` on that is present, in order.
    mutating func drain(_ body: (CommandResult) -> Void) {
        let mask = slots.count - 1
        while held > 0, let r = slots[base & mask] {
            slots[base & mask] = nil
            base += 1
            held -= 1
            body(r)
        }
    }

    /// Hands out every result held, in order, skipping the sequences still missing (the job is ending early:
    /// nothing more will fill the gaps).
    mutating func drainSkippingGaps(_ body: (CommandResult) -> Void) {
        let mask = slots.count - 1
        while held > 0 {
            if let r = slots[base & mask] {
                slots[base & mask] = nil
                held -= 1
                body(r)
            }
            base += 1
        }
    }

    private mutating func grow(toFit offset: Int) {
        var c = slots.count
        while c <= offset { c *= 2 }
        var fresh = [CommandResult?](repeating: nil, count: c)
        let oldMask = slots.count - 1
        for seq in base..<(base + slots.count) where slots[seq & oldMask] != nil {
            fresh[seq & (c - 1)] = slots[seq & oldMask]
        }
        slots = fresh
    }
}
