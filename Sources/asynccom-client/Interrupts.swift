import Glibc
import AsyncComClient
import AsyncComEventLoop
import Synchronization

/// Ctrl-C (SIGINT) and SIGTERM: the first asks the job to stop gracefully (stop sending, keep every result
/// received, print the partial summary, exit 130 or 143); the second exits at once with 128 + the signal.
///
/// The handler does only async-signal-safe work: it counts, exits on the second signal, and writes the
/// signal number to a pipe; a thread of its own reads the pipe and interrupts the job. Not a Dispatch worker: on a
/// process with one CPU that is the pool's only thread, and the job's end (resumed on the pool) then waited for
/// Dispatch's once-a-second check for blocked workers: every job took a second longer (a 2 ms job 1.01 s).
enum Interrupts {
    /// The first signal received, 0 if none.
    static var firstSignal: Int32 { received.load(ordering: .acquiring) }

    static func install(interruption: JobInterruption, onFirst: @escaping @Sendable (Int32) -> Void) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        signalPipeWrite = fds[1]
        let readEnd = fds[0]
        do {
            try LoopThread.spawn {
                var byte: UInt8 = 0
                while read(readEnd, &byte, 1) < 0 && errno == EINTR {}
                let signal = Int32(byte)
                received.store(signal, ordering: .releasing)
                onFirst(signal)
                interruption.interrupt()
            }
        } catch {
            // No thread: no graceful stop; the default dispositions stay (a signal ends the process).
            Glibc.close(fds[0])
            Glibc.close(fds[1])
            return
        }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = interruptSignalHandler
        sigemptyset(&action.sa_mask)
        // Neither signal interrupts the handler of the other: the count is never updated concurrently.
        sigaddset(&action.sa_mask, SIGINT)
        sigaddset(&action.sa_mask, SIGTERM)
        action.sa_flags = SA_RESTART
        sigaction(SIGINT, &action, nil)
        sigaction(SIGTERM, &action, nil)
    }

    private static let received = Atomic<Int32>(0)
}

/// Written once before the handler is installed, then only read by it.
nonisolated(unsafe) private var signalPipeWrite: Int32 = -1
/// Touched only by the signal handler, which neither signal can interrupt (see `sa_mask`).
nonisolated(unsafe) private var signalsSeen = 0

private let interruptSignalHandler: @convention(c) (Int32) -> Void = { signal in
    signalsSeen += 1
    if signalsSeen > 1 { _exit(128 + signal) }
    var byte = UInt8(truncatingIfNeeded: signal)
    _ = write(signalPipeWrite, &byte, 1)
}
