import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The folder generated data sets, certificates and helper binaries go into (`--scratch`). By default one per
/// user, `$TMPDIR/asynccom-bench-<uid>` (`/tmp` without TMPDIR), created 0700: a shared fixed path would let
/// users overwrite (or plant) each other's data sets and keys.
enum Scratch {
    static var defaultPath: String {
        var base = getenv("TMPDIR").map { String(cString: $0) } ?? ""
        if base.isEmpty { base = "/tmp" }
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        return "\(base)/asynccom-bench-\(getuid())"
    }

    /// Creates `path` (with its parents) 0700 when missing and returns it. The default folder must be a real
    /// directory (not a link) of this user's that no one else may write to; one given with --scratch must be a
    /// directory.
    static func prepare(_ given: String?) throws -> String {
        let path = given ?? defaultPath
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw RunFailure(description: "--scratch \(path): cannot create it: \(error.localizedDescription)")
        }
        var info = stat()
        guard (given == nil ? lstat(path, &info) : stat(path, &info)) == 0 else {
            throw RunFailure(description: "--scratch \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw RunFailure(description: "--scratch \(path): not a directory") }
        if given == nil && (info.st_uid != getuid() || info.st_mode & 0o022 != 0) {
            throw RunFailure(description: "\(path) belongs to another user or others may write to it: remove it, or give --scratch DIR")
        }
        return path
    }
}
