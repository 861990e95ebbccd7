import AsyncComEventLoop
import Foundation
import Testing

/// A non-blocking socket pair whose first end is readable (one byte is waiting).
private func readablePair() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
    precondition(socketpair(AF_UNIX, type, 0, &fds) == 0)
    var byte: UInt8 = 1
    precondition(write(fds[1], &byte, 1) == 1)
    return (fds[0], fds[1])
}

@Suite("IOWatcher") struct IOWatcherTests {
    @Test func watcherCancelsAndReleasesItselfInsideItsCallback() throws {
        let loop = try EventLoop()
        let (a, b) = readablePair()
        defer { close(a); close(b) }
        var calls = 0
        var watcher: IOWatcher?
        weak var weakWatcher: IOWatcher?
        watcher = IOWatcher(loop: loop, fd: a) { _, _ in
            calls += 1
            watcher?.cancel()
            watcher = nil  // the last strong reference: deinit runs right after the callback
        }
        weakWatcher = watcher
        watcher!.setInterest(read: true, write: true)  // both directions ready: one cancel stops both
        loop.run()  // returns when no events are left
        #expect(calls == 1)
        #expect(weakWatcher == nil)
    }

    @Test func watcherReleasedWithoutCancelInsideItsCallback() throws {
        let loop = try EventLoop()
        let (a, b) = readablePair()
        defer { close(a); close(b) }
        var calls = 0
        var watcher: IOWatcher?
        watcher = IOWatcher(loop: loop, fd: a) { _, _ in
            calls += 1
            watcher = nil  // deinit cancels
        }
        watcher!.setInterest(read: true, write: true)
        loop.run()
        #expect(calls == 1)
    }

    @Test func callbackCancelsAndReleasesAnotherReadyWatcher() throws {
        let loop = try EventLoop()
        let (a1, b1) = readablePair()
        let (a2, b2) = readablePair()
        defer { close(a1); close(b1); close(a2); close(b2) }
        var calls = 0
        var watchers: [IOWatcher?] = [nil, nil]
        for (i, fd) in [a1, a2].enumerated() {
            watchers[i] = IOWatcher(loop: loop, fd: fd) { _, _ in
                calls += 1
                // Whichever runs first kills both, although the other one is already active.
                for j in 0..<2 {
                    watchers[j]?.cancel()
                    watchers[j] = nil
                }
            }
            watchers[i]!.setInterest(read: true, write: false)
        }
        loop.run()
        #expect(calls == 1)
    }

    @Test func interestChangesAreReflectedAndCancelIsFinal() throws {
        let loop = try EventLoop()
        let (a, b) = readablePair()
        defer { close(a); close(b) }
        var reads = 0
        var writes = 0
        let watcher = IOWatcher(loop: loop, fd: a) { readable, writable in
            if readable { reads += 1 }
            if writable { writes += 1 }
        }
        #expect(watcher.fd == a)
        #expect(!watcher.wantsRead && !watcher.wantsWrite)
        watcher.setInterest(read: false, write: true)
        #expect(watcher.wantsWrite && !watcher.wantsRead)
        loop.runOnce(nonBlocking: true)
        #expect(writes == 1 && reads == 0)
        watcher.setInterest(read: true, write: false)
        loop.runOnce(nonBlocking: true)
        #expect(writes == 1 && reads == 1)
        watcher.cancel()
        #expect(!watcher.wantsRead && !watcher.wantsWrite)
        watcher.setInterest(read: true, write: true)  // ignored after cancel
        #expect(!watcher.wantsRead)
        loop.run()  // nothing left
        #expect(reads == 1 && writes == 1)
    }
}
