import Glibc

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

    /// A whole file in memory: mapped when it is a regular file (no copy, no anonymous pages to fault in), read
    /// into a malloc'd block otherwise (pipes, pseudo-files that report no size).
    struct Contents: ~Copyable {
        let bytes: UnsafeRawBufferPointer
        private let mapped: Bool

        init(mapped base: UnsafeMutableRawPointer, count: Int) {
            bytes = UnsafeRawBufferPointer(start: base, count: count)
            mapped = true
        }

        init(allocated base: UnsafeMutableRawPointer, count: Int) {
            bytes = UnsafeRawBufferPointer(start: base, count: count)
            mapped = false
        }

        deinit {
            guard let base = bytes.baseAddress else { return }
            if mapped { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) } else { free(UnsafeMutableRawPointer(mutating: base)) }
        }
    }

    static func readAll(_ path: String) throws(InputFileError) -> Contents {
        let fd = try openFile(path, name: path)
        defer { close(fd) }
        var st = stat()
        _ = fstat(fd, &st)
        if (st.st_mode & S_IFMT) == S_IFREG && st.st_size > 0 {
            let size = Int(st.st_size)
            // MAP_POPULATE: one call maps every page, instead of a fault per 4 KiB while parsing.
            if let base = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0), base != MAP_FAILED {
                return Contents(mapped: base, count: size)
            }
        }
        var capacity = max(Int(st.st_size) + 1, 4096)  // +1: hitting EOF needs no second buffer
        guard var buffer = malloc(capacity) else {
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
                buffer = grown
            }
            let n = read(fd, buffer + count, capacity - count)
            if n > 0 { count += n; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            let e = errno
            free(buffer)
            throw InputFileError(file: path, line: nil, message: describe(errno: e))
        }
        return Contents(allocated: buffer, count: count)
    }
}
