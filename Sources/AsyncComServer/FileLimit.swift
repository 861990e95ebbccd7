import Glibc

/// The open-file limit (RLIMIT_NOFILE), which bounds how many connections a server can hold: each is one file.
public enum FileLimit {
    /// Files a server needs besides its connections: listeners, each reactor's notifier and epoll, the map
    /// while it loads, logs.
    public static let reserve = 64

    /// Raises the soft limit to the hard one (an unprivileged process may) and returns the soft limit now in
    /// force. The default soft limit is often 1024, far below what the hard limit allows.
    @discardableResult
    public static func raiseToHard() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return Int.max }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur > rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)  // RLIM_INFINITY included
    }

    /// The most connections `files` open files leave room for.
    public static func connections(files: Int) -> Int { max(files - reserve, 1) }
}
