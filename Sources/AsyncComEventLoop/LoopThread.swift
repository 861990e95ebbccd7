import Glibc

/// The one thread starter: every thread the libraries start (the server's reactors, the client's engine loop and
/// input reader) runs its body through here.
public enum LoopThread {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts `body` on a new joinable thread; the caller joins the returned thread.
    public static func start(_ body: @escaping () -> Void) throws(SystemError) -> pthread_t {
        try create(body, detached: false)
    }

    /// Starts `body` on a new detached thread (nobody waits for it; it ends when `body` returns).
    public static func spawn(_ body: @escaping () -> Void) throws(SystemError) {
        _ = try create(body, detached: true)
    }

    private static func create(_ body: @escaping () -> Void, detached: Bool) throws(SystemError) -> pthread_t {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if detached { pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED)) }
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, loopThreadEntry, box)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw SystemError("pthread_create", errno: rc)
        }
        return thread
    }

    fileprivate static func run(_ raw: UnsafeMutableRawPointer) {
        let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
        box.body()
    }
}

private let loopThreadEntry: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? = { raw in
    LoopThread.run(raw!)
    return nil
}
