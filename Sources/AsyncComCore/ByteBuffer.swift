#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A growable contiguous byte buffer with a read and a write index, used for socket input and output.
///
/// A class with manually managed storage rather than `[UInt8]`: every hot path (parsing requests, appending
/// replies) works on raw pointers without copy-on-write checks, and the storage can be handed to `read(2)` and
/// `write(2)` directly. Not thread-safe: each buffer belongs to one reactor or one client loop.
public final class ByteBuffer {
    // Unchecked exclusivity: these are plain integers and a pointer touched on every append, and the runtime's
    // dynamic access tracking cost a fifth of the request path. A buffer belongs to one thread, and no method
    // hands out an inout reference to them, so overlapping accesses cannot happen.
    @exclusivity(unchecked) public private(set) var storage: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) public private(set) var capacity: Int
    @exclusivity(unchecked) public private(set) var readerIndex: Int = 0
    @exclusivity(unchecked) public private(set) var writerIndex: Int = 0

    public init(capacity: Int = 4096) {
        self.capacity = max(capacity, 16)
        self.storage = UnsafeMutablePointer<UInt8>.allocate(capacity: self.capacity)
    }

    deinit { storage.deallocate() }

    @inline(__always) public var readableBytes: Int { writerIndex - readerIndex }
    @inline(__always) public var isEmpty: Bool { writerIndex == readerIndex }
    @inline(__always) public var readPointer: UnsafeMutablePointer<UInt8> { storage + readerIndex }
    @inline(__always) public var writePointer: UnsafeMutablePointer<UInt8> { storage + writerIndex }
    @inline(__always) public var writableBytes: Int { capacity - writerIndex }

    /// The readable bytes, valid until the next mutation.
    @inline(__always) public var readableView: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage + readerIndex, count: writerIndex - readerIndex)
    }

    /// Makes room for at least `n` more bytes after `writerIndex`, compacting before growing.
    @inline(__always) public func reserveWritable(_ n: Int) {
        if capacity - writerIndex >= n { return }
        makeRoom(n)
    }

    @inline(never) private func makeRoom(_ n: Int) {
        let readable = writerIndex - readerIndex
        if readerIndex > 0 && capacity - readable >= n && readable <= capacity / 2 {
            // Compact: cheaper than growing when most of the buffer has been consumed.
            if readable > 0 { memmove(storage, storage + readerIndex, readable) }
            readerIndex = 0
            writerIndex = readable
            return
        }
        var newCapacity = capacity
        while newCapacity - readable < n { newCapacity *= 2 }
        let newStorage = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        if readable > 0 { newStorage.update(from: storage + readerIndex, count: readable) }
        storage.deallocate()
        storage = newStorage
        capacity = newCapacity
        readerIndex = 0
        writerIndex = readable
    }

    /// Records that `n` bytes were written at `writePointer` (e.g. by `read(2)`).
    @inline(__always) public func didWrite(_ n: Int) {
        precondition(n >= 0 && writerIndex + n <= capacity)
        writerIndex += n
    }

    /// Drops `n` readable bytes from the front.
    @inline(__always) public func consume(_ n: Int) {
        precondition(n >= 0 && n <= readableBytes)
        readerIndex += n
        if readerIndex == writerIndex { readerIndex = 0; writerIndex = 0 }
    }

    /// Drops everything written after `writerIndex` was `mark` (rolls back a partly written message).
    ///
    /// Careful: an absolute `writerIndex` mark goes stale when an append in between grows or compacts the
    /// storage (both move the readable bytes to offset 0). Prefer `truncate(readableBytes:)` with a mark taken
    /// from `readableBytes`, which survives both.
    @inline(__always) public func truncate(to mark: Int) {
        precondition(mark >= readerIndex && mark <= writerIndex)
        writerIndex = mark
    }

    /// Rolls back to a mark taken from `readableBytes`: keeps the first `n` readable bytes, drops the rest.
    /// Unlike an absolute `writerIndex` mark, this one stays valid when appends grow or compact the buffer.
    @inline(__always) public func truncate(readableBytes n: Int) {
        precondition(n >= 0 && n <= writerIndex - readerIndex)
        writerIndex = readerIndex + n
    }

    /// Moves the readable bytes to the front so that all free space is writable (like NIO's discardReadBytes).
    public func discardReadBytes() {
        guard readerIndex > 0 else { return }
        let readable = writerIndex - readerIndex
        if readable > 0 { memmove(storage, storage + readerIndex, readable) }
        readerIndex = 0
        writerIndex = readable
    }

    public func clear() { readerIndex = 0; writerIndex = 0 }

    /// Gives memory back after a burst: shrinks to `limit` bytes when the buffer is empty and larger than that.
    public func shrinkIfEmpty(limit: Int) {
        guard isEmpty, capacity > limit else { return }
        storage.deallocate()
        capacity = max(limit, 16)
        storage = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        readerIndex = 0
        writerIndex = 0
    }

    @inline(__always) public func append(byte: UInt8) {
        reserveWritable(1)
        storage[writerIndex] = byte
        writerIndex += 1
    }

    /// Appends `bytes`, which must not point into this buffer (growing would free them first).
    @inline(__always) public func append(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        guard n > 0 else { return }
        reserveWritable(n)
        UnsafeMutableRawPointer(storage + writerIndex).copyMemory(from: bytes.baseAddress!, byteCount: n)
        writerIndex += n
    }

    public func append(_ s: StaticString) {
        append(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    public func append(string: String) {
        var s = string
        s.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Appends `other`'s readable bytes (`other` may be this buffer: room is made before the view is taken).
    public func append(_ other: ByteBuffer) {
        let n = other.readableBytes
        guard n > 0 else { return }
        reserveWritable(n)
        append(other.readableView)
    }

    /// Appends the decimal form of `value`.
    @inline(__always) public func appendDecimal(_ value: UInt64) {
        reserveWritable(20)
        if value < 10 {
            storage[writerIndex] = 0x30 &+ UInt8(truncatingIfNeeded: value)
            writerIndex += 1
            return
        }
        var digits = 0
        var v = value
        while v > 0 { digits += 1; v /= 10 }
        var p = storage + writerIndex + digits
        v = value
        while v > 0 {
            p -= 1
            p.pointee = 0x30 &+ UInt8(truncatingIfNeeded: v % 10)
            v /= 10
        }
        writerIndex += digits
    }

    @inline(__always) public func appendDecimal(_ value: Int64) {
        if value < 0 {
            append(byte: UInt8(ascii: "-"))
            appendDecimal(value.magnitude)
        } else {
            appendDecimal(UInt64(value))
        }
    }

    /// A copy of the readable bytes as a String (tests, diagnostics).
    public var readableString: String { String(decoding: readableView, as: UTF8.self) }
}
