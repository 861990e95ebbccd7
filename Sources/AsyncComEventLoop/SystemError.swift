#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: the operation (with its argument when useful) and errno.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let errno: Int32
    /// Replaces strerror(errno) in `description` for errors that are not errno values (getaddrinfo's EAI_*).
    public let message: String?

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
        self.message = nil
    }

    public init(_ operation: String, errno: Int32, message: String) {
        self.operation = operation
        self.errno = errno
        self.message = message
    }

    /// "operation: strerror(errno) (errno N)".
    public var description: String {
        if let message { return "\(operation): \(message)" }
        return "\(operation): \(String(cString: strerror(errno))) (errno \(errno))"
    }

    /// The error of the last failed call on this thread.
    @inline(__always) static func last(_ operation: @autoclosure () -> String) -> SystemError {
        SystemError(operation(), errno: Glibc.errno)
    }
}
