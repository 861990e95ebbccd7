import AsyncComEventLoop
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Timer") struct TimerTests {
    @Test func firesNotBeforeItsDelayAndWithinABound() throws {
        let loop = try EventLoop()
        let delay: UInt64 = 50_000_000
        var firedAt: UInt64 = 0
        let timer = EventTimer(loop: loop) {
            firedAt = EventLoop.monotonicNanos()
            loop.stop()
        }
        let start = EventLoop.monotonicNanos()
        timer.schedule(afterNanos: delay)
        #expect(timer.isPending)
        #expect(runWithWatchdog(loop))
        #expect(!timer.isPending)
        #expect(firedAt - start >= delay)
        #expect(firedAt - start < 2_000_000_000)
    }

    @Test func absoluteDeadlineDoesNotFireEarly() throws {
        let loop = try EventLoop()
        var firedAt: UInt64 = 0
        let deadline = EventLoop.monotonicNanos() + 30_000_000
        let timer = EventTimer(loop: loop) {
            firedAt = EventLoop.monotonicNanos()
            loop.stop()
        }
        timer.schedule(atMonotonicNanos: deadline)
        #expect(runWithWatchdog(loop))
        #expect(firedAt >= deadline)
    }

    @Test func passedDeadlineFiresAtOnce() throws {
        let loop = try EventLoop()
        var fired = false
        let timer = EventTimer(loop: loop) {
            fired = true
            loop.stop()
        }
        timer.schedule(atMonotonicNanos: 0)
        #expect(runWithWatchdog(loop))
        #expect(fired)
    }

    @Test func reschedulesFromInsideItsCallback() throws {
        let loop = try EventLoop()
        var fires: [UInt64] = []
        var timer: EventTimer?
        timer = EventTimer(loop: loop) {
            fires.append(EventLoop.monotonicNanos())
            if fires.count < 3 {
                timer!.schedule(afterNanos: 10_000_000)
                #expect(timer!.isPending)
            } else {
                loop.stop()
            }
        }
        timer!.schedule(afterNanos: 10_000_000)
        #expect(runWithWatchdog(loop))
        #expect(fires.count == 3)
        for i in 1..<fires.count { #expect(fires[i] - fires[i - 1] >= 10_000_000) }
        timer = nil
    }

    @Test func rescheduleReplacesEarlierArming() throws {
        let loop = try EventLoop()
        var fires = 0
        let timer = EventTimer(loop: loop) {
            fires += 1
            loop.stop()
        }
        let start = EventLoop.monotonicNanos()
        timer.schedule(afterNanos: 1_000_000)
        timer.schedule(afterNanos: 40_000_000)
        var stoppedAt: UInt64 = 0
        let stopper = EventTimer(loop: loop) {
            stoppedAt = EventLoop.monotonicNanos()
            loop.stop()
        }
        stopper.schedule(afterNanos: 20_000_000)
        #expect(runWithWatchdog(loop))
        // Up to the stopper nothing may have fired (the 1 ms arming was replaced).
        #expect(fires == 0)
        #expect(stoppedAt - start >= 20_000_000)
        #expect(runWithWatchdog(loop))
        #expect(fires == 1)
    }

    @Test func cancelPreventsFiring() throws {
        let loop = try EventLoop()
        var fired = false
        let timer = EventTimer(loop: loop) { fired = true }
        timer.schedule(afterNanos: 5_000_000)
        timer.cancel()
        #expect(!timer.isPending)
        let later = EventTimer(loop: loop) { loop.stop() }
        later.schedule(afterNanos: 30_000_000)
        #expect(runWithWatchdog(loop))
        #expect(!fired)
    }

    @Test func timerReleasedInsideItsOwnCallback() throws {
        let loop = try EventLoop()
        var fired = 0
        var timer: EventTimer?
        timer = EventTimer(loop: loop) {
            fired += 1
            timer = nil  // last reference
            loop.stop()
        }
        timer!.schedule(afterNanos: 0)
        #expect(runWithWatchdog(loop))
        #expect(fired == 1)
        #expect(timer == nil)
    }

    @Test func runReturnsWhenNoEventsAreLeft() throws {
        let loop = try EventLoop()
        loop.run()  // nothing registered: returns at once
        #expect(loop.runOnce(nonBlocking: true) == false)
    }
}

@Suite("Timer priority") struct TimerPriorityTests {
    /// A socket that stays readable (its bytes are never read) keeps an I/O callback active every iteration: a
    /// due urgent timer must run before that callback runs again; an ordinary one runs after it.
    func ioCallbacksBeforeTimer(urgent: Bool) throws -> Int {
        let loop = try EventLoop()
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        #expect(write(fds[1], "x", 1) == 1)
        var ioCalls = 0
        var callsWhenFired = -1
        let timer = EventTimer(loop: loop, urgent: urgent) {
            callsWhenFired = ioCalls
            loop.stop()
        }
        let watcher = IOWatcher(loop: loop, fd: fds[0]) { _, _ in
            ioCalls += 1
            if ioCalls == 1 { timer.schedule(atMonotonicNanos: 0) }  // due at once
            if ioCalls > 100 { loop.stop() }
        }
        defer { watcher.cancel(); timer.cancel() }
        watcher.setInterest(read: true, write: false)
        #expect(runWithWatchdog(loop))
        return callsWhenFired
    }

    @Test func anUrgentTimerRunsBeforeTheNextRoundOfReads() throws {
        #expect(try ioCallbacksBeforeTimer(urgent: true) == 1)
    }

    @Test func anOrdinaryTimerWaitsItsTurn() throws {
        #expect(try ioCallbacksBeforeTimer(urgent: false) >= 2)
    }
}
