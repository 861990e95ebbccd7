#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Starts `body` on a new detached thread (the engine's loop thread).
enum LoopThread {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    static func spawn(_ body: @escaping () -> Void) throws(ClientError) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        #if canImport(Glibc)
        var thread = pthread_t()
        #else
        var thread: pthread_t?
        #endif
        let rc = pthread_create(&thread, &attributes, loopThreadEntry, box)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw .startup("pthread_create: \(String(cString: strerror(rc)))")
        }
    }

    fileprivate static func run(_ raw: UnsafeMutableRawPointer) {
        let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
        box.body()
    }
}

#if canImport(Glibc)
private let loopThreadEntry: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? = { raw in
    LoopThread.run(raw!)
    return nil
}
#else
private let loopThreadEntry: @convention(c) (UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? = { raw in
    LoopThread.run(raw)
    return nil
}
#endif
