#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opening and slurping input files with errors that say what is wrong in words a user can act on.
enum FileInput {
    /// Opens `path` read-only and refuses directories (open(2) happily opens them; read(2) then fails with EISDIR).
    static func openFile(_ path: String, name: String) throws(InputFileError) -> Int32 {
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw InputFileError(file: name, line: nil, message: describe(errno: errno)) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let e = errno
            close(fd)
            throw InputFileError(file: name, line: nil, message: describe(errno: e))
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw InputFileError(file: name, line: nil, message: "is a directory, not a file")
        }
        return fd
    }

    static func describe(errno e: Int32) -> String {
        switch e {
        case ENOENT: return "no such file"
        case EACCES, EPERM: return "permission denied"
        case EISDIR: return "is a directory, not a file"
        default: return "cannot read: " + String(cString: strerror(e))
        }
    }

    /// Reads the whole file into one malloc'd block (caller frees): one read(2) for a regular file whose size
    /// fstat knows, growing only for pipes and pseudo-files that report no size.
    static func readAll(_ path: String) throws(InputFileError) -> (bytes: UnsafeMutablePointer<UInt8>, count: Int) {
        let fd = try openFile(path, name: path)
        defer { close(fd) }
        var st = stat()
        _ = fstat(fd, &st)
        var capacity = max(Int(st.st_size) + 1, 4096)  // +1: hitting EOF needs no second buffer
        guard var buffer = malloc(capacity)?.assumingMemoryBound(to: UInt8.self) else {
            throw InputFileError(file: path, line: nil, message: "out of memory reading \(st.st_size) bytes")
        }
        var count = 0
        while true {
            if count == capacity {
                capacity *= 2
                guard let grown = realloc(buffer, capacity) else {
                    free(buffer)
                    throw InputFileError(file: path, line: nil, message: "out of memory reading the file")
                }
                buffer = grown.assumingMemoryBound(to: UInt8.self)
            }
            let n = read(fd, buffer + count, capacity - count)
            if n > 0 { count += n; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            let e = errno
            free(buffer)
            throw InputFileError(file: path, line: nil, message: describe(errno: e))
        }
        return (buffer, count)
    }

    /// A field or line quoted for an error message: printable ASCII kept, anything else shown as `?`, cut at
    /// `limit` bytes so a binary or huge line cannot flood a terminal or log.
    static func quote(_ bytes: UnsafeRawBufferPointer, limit: Int = 80) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(min(bytes.count, limit) + 3)
        for (i, c) in bytes.enumerated() {
            if i == limit { out.append(contentsOf: [0x2E, 0x2E, 0x2E]); break }
            out.append(c >= 0x20 && c < 0x7F ? c : UInt8(ascii: "?"))
        }
        return String(decoding: out, as: UTF8.self)
    }
}
