import AsyncComEventLoop
import Foundation
import Testing

@Suite("Notifier") struct NotifierTests {
    @Test func wakesALoopBlockedInRunFromAnotherThread() throws {
        let loop = try EventLoop()
        var calls = 0
        let notifier = try Notifier(loop: loop) {
            calls += 1
            loop.stop()
        }
        // The loop has only the notifier (and the watchdog): without the wake-up it would block for 10 s.
        Thread.detachNewThread { [notifier] in
            usleep(20_000)
            notifier.notify()
        }
        #expect(runWithWatchdog(loop))
        #expect(calls == 1)
        notifier.cancel()
    }

    @Test func notificationsBeforeTheLoopRunsCoalesce() throws {
        let loop = try EventLoop()
        var calls = 0
        let notifier = try Notifier(loop: loop) { calls += 1 }
        for _ in 0..<5 { notifier.notify() }
        let stopper = EventTimer(loop: loop) { loop.stop() }
        stopper.schedule(afterNanos: 20_000_000)
        #expect(runWithWatchdog(loop))
        #expect(calls == 1)
    }

    @Test func cancelledNotifierNeitherCallsNorKeepsTheLoopRunning() throws {
        let loop = try EventLoop()
        var calls = 0
        let notifier = try Notifier(loop: loop) { calls += 1 }
        notifier.cancel()
        notifier.cancel()  // idempotent
        notifier.notify()  // harmless after cancel
        loop.run()  // no events left: returns at once
        #expect(calls == 0)
    }
}

@Suite("SignalWatcher") struct SignalWatcherTests {
    @Test func observesASignalRaisedFromTheLoop() throws {
        let loop = try EventLoop()
        var received = 0
        let watcher = SignalWatcher(loop: loop, signal: SIGUSR1) {
            received += 1
            loop.stop()
        }
        // kill, not raise: test threads are dispatch workers that block signals, and raise() targets the calling
        // thread; a process-directed signal goes to any thread that accepts it, libevent forwards it to the loop.
        let raiser = EventTimer(loop: loop) { kill(getpid(), SIGUSR1) }
        raiser.schedule(afterNanos: 0)
        #expect(runWithWatchdog(loop))
        #expect(received == 1)
        watcher.cancel()
    }
}

@Suite("SystemError") struct SystemErrorTests {
    @Test func describesOperationStrerrorAndNumber() {
        let error = SystemError("bind(127.0.0.1:80)", errno: EACCES)
        #expect(error.description == "bind(127.0.0.1:80): Permission denied (errno \(EACCES))")
    }
}
