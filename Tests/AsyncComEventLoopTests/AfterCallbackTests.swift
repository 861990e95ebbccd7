import AsyncComEventLoop
import Glibc
import Testing

/// `EventLoop.afterCallback` runs once after every callback, whatever kind of event it was, after the callback
/// has returned (also when the callback freed its own watcher).
@Suite struct AfterCallbackTests {
    @Test func runsAfterEveryKindOfCallback() throws {
        let loop = try EventLoop()
        var log: [String] = []
        loop.afterCallback = { log.append("after") }

        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        var watcher: IOWatcher?
        let notifier = try Notifier(loop: loop) {
            log.append("notifier")
            // The watcher frees itself in its own callback; the hook still runs after it.
            watcher = IOWatcher(loop: loop, fd: fds[0]) { readable, _ in
                log.append("watcher")
                watcher?.cancel()
                watcher = nil
                var byte: UInt8 = 0
                _ = read(fds[0], &byte, 1)
            }
            watcher?.setInterest(read: true, write: false)
            _ = write(fds[1], "x", 1)
        }
        let timer = EventTimer(loop: loop) {
            log.append("timer")
            loop.stop()
        }
        notifier.notify()
        // Each step runs one iteration; the timer is armed once the watcher has fired.
        for _ in 0..<50 where !log.contains("watcher") { loop.runOnce() }
        timer.schedule(afterNanos: 0)
        #expect(runWithWatchdog(loop))
        #expect(log == ["notifier", "after", "watcher", "after", "timer", "after"])
        loop.afterCallback = nil
    }
}
