import AsyncComCore
import AsyncComEventLoop
import AsyncComTLS

/// One accepted socket, owned by the reactor that accepted it.
final class ServerConnection {
    enum State {
        /// Reading and answering requests.
        case open
        /// No more lines are processed; in-flight replies are still sent, then the connection lingers.
        /// Entered on QUIT, LINE_TOO_LONG, idle timeout and server shutdown.
        case finishing
        /// Our side is shut down for writing; the peer's remaining bytes are discarded until EOF or `deadline`,
        /// so that closing never turns unread input into a RST that could destroy replies already sent.
        case lingering(deadline: UInt64)
        /// Closed and out of the table; kept only until the callback that closed it returns.
        case closed
    }

    let fd: Int32
    let slot: UInt32
    let generation: UInt32
    var watcher: IOWatcher?
    /// Bytes of an incomplete line (or of lines held back by backpressure). Usually empty: reads go to the
    /// reactor's shared read buffer and only leftovers are copied here, so idle connections stay small.
    /// Both buffers start at the smallest size and grow on first use: a connection that has sent nothing yet
    /// costs the server 1.0 KiB instead of 2.0 KiB with 256 + 1024 bytes up front (bench `connections`).
    let input = ByteBuffer(capacity: 16)
    let output = ByteBuffer(capacity: 16)
    var state: State = .open
    /// Backpressure: too much in flight or unsent; stop reading until it halves.
    var paused = false
    var inflightRequests = 0
    var inflightCommands = 0
    /// Bytes of this connection's replies waiting in the pending rings (for reclaiming them at close).
    var pendingBytes = 0
    /// Monotonic time of the last byte received or reply delivered (idle timeout).
    var lastActivity: UInt64
    /// Bytes written to the socket so far, and the sweep's view of it: output that makes no progress for the
    /// idle timeout belongs to a peer that stopped reading, and the connection is closed.
    var bytesWritten = 0
    var stallMark = 0
    var stallSince: UInt64 = 0
    /// Set while the connection is on the reactor's list of connections to flush after a timer fire.
    var queuedForFlush = false
    /// Replies the current reply-timer firing appended (for `late_write_us`).
    var firedReplies = 0
    /// The BYE line of a QUIT, held until the replies in flight have been sent.
    var byeLine: [UInt8]?
    /// Set until the connection has authenticated (servers that require it): see `Reactor+Gate.swift`.
    var gate: ConnectionGate?
    /// The TLS session of a connection accepted on a `tls://` listener; nil for plaintext.
    var tls: TLSSession?

    init(fd: Int32, slot: UInt32, generation: UInt32, now: UInt64) {
        self.fd = fd
        self.slot = slot
        self.generation = generation
        self.lastActivity = now
    }

    var isOpen: Bool { if case .open = state { return true } else { return false } }

    /// Reads at most `count` bytes, through TLS when the connection has it (see `Socket.read`).
    @inline(__always) func receive(into buffer: ByteBuffer, atMost count: Int) throws(SystemError) -> Int? {
        if let tls { return try tls.read(into: buffer, atMost: count) }
        return try Socket.read(fd: fd, into: buffer, atMost: count)
    }

    /// Writes what the socket takes of `buffer`, through TLS when the connection has it (see `Socket.write`).
    @inline(__always) func send(from buffer: ByteBuffer) throws(SystemError) -> Int {
        if let tls { return try tls.write(from: buffer) }
        return try Socket.write(fd: fd, from: buffer)
    }
}

/// Something kept in a `SlotTable`: it knows its own slot.
protocol Slotted: AnyObject {
    var slot: UInt32 { get }
}

extension ServerConnection: Slotted {}

/// The reactor's connections by slot.
typealias ConnectionTable = SlotTable<ServerConnection>

/// Objects by slot. A slot's generation changes whenever its object leaves, so a `(slot, generation)` pair held
/// by a pending reply detects a closed or replaced connection with two array reads, no dictionary and no
/// reference counting on the hot path.
struct SlotTable<Element: Slotted> {
    private(set) var slots: [Element?] = []
    private var generations: [UInt32] = []
    private var free: [UInt32] = []
    private(set) var count = 0

    /// Takes a free slot; returns it with its current generation.
    mutating func reserve() -> (slot: UInt32, generation: UInt32) {
        count += 1
        if let slot = free.popLast() { return (slot, generations[Int(slot)]) }
        let slot = UInt32(slots.count)
        slots.append(nil)
        generations.append(0)
        return (slot, 0)
    }

    mutating func install(_ element: Element) {
        slots[Int(element.slot)] = element
    }

    /// The live element at `slot` if it is still generation `generation`.
    @inline(__always) func get(_ slot: UInt32, _ generation: UInt32) -> Element? {
        let i = Int(slot)
        guard i < slots.count, generations[i] == generation else { return nil }
        return slots[i]
    }

    /// Frees the slot and invalidates every `(slot, generation)` reference to it.
    mutating func release(_ element: Element) {
        let i = Int(element.slot)
        precondition(slots[i] === element, "slot table out of step")
        slots[i] = nil
        generations[i] &+= 1
        free.append(element.slot)
        count -= 1
    }

    /// The live elements (a copy: the caller may release elements while iterating).
    var all: [Element] { slots.compactMap { $0 } }
}
