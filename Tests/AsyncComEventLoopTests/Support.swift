import AsyncComEventLoop
import Foundation

/// Runs `loop` until a callback stops it; a watchdog stops it after `seconds` so a broken test fails
/// instead of hanging. Returns false when the watchdog fired.
func runWithWatchdog(_ loop: EventLoop, seconds: UInt64 = 10) -> Bool {
    var timedOut = false
    let watchdog = EventTimer(loop: loop) {
        timedOut = true
        loop.stop()
    }
    watchdog.schedule(afterNanos: seconds * 1_000_000_000)
    loop.run()
    watchdog.cancel()
    return !timedOut
}

/// A fresh directory for Unix socket files (short path: sun_path holds 107 bytes).
func makeTempDirectory() throws -> String {
    var template = Array("/tmp/asynccom-evloop-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw SystemError("mkdtemp", errno: errno)
    }
    return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
