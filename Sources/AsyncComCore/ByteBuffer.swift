import Glibc

/// A growable contiguous byte buffer with a read and a write index, used for socket input and output.
///
/// A class with manually managed storage rather than `[UInt8]`: every hot path (parsing requests, appending
/// replies) works on raw pointers without copy-on-write checks, and the storage can be handed to `read(2)` and
/// `write(2)` directly. Not thread-safe: each buffer belongs to one reactor or one client loop.
public final class ByteBuffer {
    // Unchecked exclusivity: these are plain integers and a pointer touched on every append, and the runtime's
    // dynamic access tracking cost a fifth of the request path. A buffer belongs to one thread, and no method
    // hands out an inout reference to them, so overlapping accesses cannot happen.
    //
    // The hot methods are @inlinable (over these @usableFromInline fields), so that code in other modules (the
    // client appends every command's item, the reactors every reply) inlines them: as calls across modules they
    // cost a call each plus a retain and a release of the buffer.
    @usableFromInline @exclusivity(unchecked) var _storage: UnsafeMutablePointer<UInt8>
    @usableFromInline @exclusivity(unchecked) var _capacity: Int
    @usableFromInline @exclusivity(unchecked) var _readerIndex: Int = 0
    @usableFromInline @exclusivity(unchecked) var _writerIndex: Int = 0

    public var storage: UnsafeMutablePointer<UInt8> { @inlinable @inline(__always) get { _storage } }
    public var capacity: Int { @inlinable @inline(__always) get { _capacity } }
    public var readerIndex: Int { @inlinable @inline(__always) get { _readerIndex } }
    public var writerIndex: Int { @inlinable @inline(__always) get { _writerIndex } }

    public init(capacity: Int = 4096) {
        self._capacity = max(capacity, 16)
        self._storage = UnsafeMutablePointer<UInt8>.allocate(capacity: self._capacity)
    }

    deinit { _storage.deallocate() }

    @inlinable @inline(__always) public var readableBytes: Int { _writerIndex - _readerIndex }
    @inlinable @inline(__always) public var isEmpty: Bool { _writerIndex == _readerIndex }
    @inlinable @inline(__always) public var readPointer: UnsafeMutablePointer<UInt8> { _storage + _readerIndex }
    @inlinable @inline(__always) public var writePointer: UnsafeMutablePointer<UInt8> { _storage + _writerIndex }
    @inlinable @inline(__always) public var writableBytes: Int { _capacity - _writerIndex }

    /// The readable bytes, valid until the next mutation.
    @inlinable @inline(__always) public var readableView: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: _storage + _readerIndex, count: _writerIndex - _readerIndex)
    }

    /// Makes room for at least `n` more bytes after `writerIndex`, compacting before growing.
    @inlinable @inline(__always) public func reserveWritable(_ n: Int) {
        if _capacity - _writerIndex >= n { return }
        makeRoom(n)
    }

    @usableFromInline @inline(never) func makeRoom(_ n: Int) {
        let readable = _writerIndex - _readerIndex
        if _readerIndex > 0 && _capacity - readable >= n && readable <= _capacity / 2 {
            // Compact: cheaper than growing when most of the buffer has been consumed.
            if readable > 0 { memmove(_storage, _storage + _readerIndex, readable) }
            _readerIndex = 0
            _writerIndex = readable
            return
        }
        var newCapacity = _capacity
        while newCapacity - readable < n { newCapacity *= 2 }
        let newStorage = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        if readable > 0 { newStorage.update(from: _storage + _readerIndex, count: readable) }
        _storage.deallocate()
        _storage = newStorage
        _capacity = newCapacity
        _readerIndex = 0
        _writerIndex = readable
    }

    /// Records that `n` bytes were written at `writePointer` (e.g. by `read(2)`).
    @inlinable @inline(__always) public func didWrite(_ n: Int) {
        precondition(n >= 0 && _writerIndex + n <= _capacity)
        _writerIndex += n
    }

    /// Drops `n` readable bytes from the front.
    @inlinable @inline(__always) public func consume(_ n: Int) {
        precondition(n >= 0 && n <= readableBytes)
        _readerIndex += n
        if _readerIndex == _writerIndex { _readerIndex = 0; _writerIndex = 0 }
    }

    /// Rolls back to a mark taken from `readableBytes`: keeps the first `n` readable bytes, drops the rest
    /// (a partly written message). The mark stays valid when appends grow or compact the buffer (an absolute
    /// `writerIndex` would not: both move the readable bytes to offset 0).
    @inlinable @inline(__always) public func truncate(readableBytes n: Int) {
        precondition(n >= 0 && n <= _writerIndex - _readerIndex)
        _writerIndex = _readerIndex + n
    }

    /// Moves the readable bytes to the front so that all free space is writable (like NIO's discardReadBytes).
    public func discardReadBytes() {
        guard _readerIndex > 0 else { return }
        let readable = _writerIndex - _readerIndex
        if readable > 0 { memmove(_storage, _storage + _readerIndex, readable) }
        _readerIndex = 0
        _writerIndex = readable
    }

    @inlinable public func clear() { _readerIndex = 0; _writerIndex = 0 }

    /// Gives memory back after a burst: shrinks to `limit` bytes when the buffer is empty and larger than that.
    public func shrinkIfEmpty(limit: Int) {
        guard isEmpty, _capacity > limit else { return }
        _storage.deallocate()
        _capacity = max(limit, 16)
        _storage = UnsafeMutablePointer<UInt8>.allocate(capacity: _capacity)
        _readerIndex = 0
        _writerIndex = 0
    }

    @inlinable @inline(__always) public func append(byte: UInt8) {
        reserveWritable(1)
        _storage[_writerIndex] = byte
        _writerIndex += 1
    }

    /// Appends `bytes`, which must not point into this buffer (growing would free them first).
    @inlinable @inline(__always) public func append(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        guard n > 0 else { return }
        reserveWritable(n)
        UnsafeMutableRawPointer(_storage + _writerIndex).copyMemory(from: bytes.baseAddress!, byteCount: n)
        _writerIndex += n
    }

    public func append(_ s: StaticString) {
        append(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    public func append(string: String) {
        var s = string
        s.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Appends `other`'s readable bytes (`other` may be this buffer: room is made before the view is taken).
    @inlinable public func append(_ other: ByteBuffer) {
        let n = other.readableBytes
        guard n > 0 else { return }
        reserveWritable(n)
        append(other.readableView)
    }

    /// Appends the decimal form of `value`.
    @inlinable @inline(__always) public func appendDecimal(_ value: UInt64) {
        reserveWritable(20)
        if value < 10 {
            _storage[_writerIndex] = 0x30 &+ UInt8(truncatingIfNeeded: value)
            _writerIndex += 1
            return
        }
        var digits = 0
        var v = value
        while v > 0 { digits += 1; v /= 10 }
        var p = _storage + _writerIndex + digits
        v = value
        while v > 0 {
            p -= 1
            p.pointee = 0x30 &+ UInt8(truncatingIfNeeded: v % 10)
            v /= 10
        }
        _writerIndex += digits
    }

    @inlinable @inline(__always) public func appendDecimal(_ value: Int64) {
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
