#if canImport(Glibc)
import Glibc
#endif

/// CPU time and memory of a process, read from /proc (Linux).
enum ProcessMetrics {
    /// user + system CPU seconds consumed so far by `pid` (clock-tick resolution, usually 10 ms).
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = readFile("/proc/\(pid)/stat") else { return nil }
        // The command name (field 2) may hold spaces; fields after the closing parenthesis are fixed.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); utime is field 14, stime field 15.
        guard fields.count > 12, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        return (utime + stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Peak resident set size in bytes (VmHWM).
    static func peakRSS(pid: Int32) -> Int? { statusField("VmHWM", pid: pid) }

    /// CPU time the hypervisor took from this machine's CPUs so far, in seconds, summed over CPUs (/proc/stat
    /// `steal`); 0 on bare metal. Stolen time stalls whatever was running, reactors included: a lateness figure
    /// measured while the host stole milliseconds says more about the host than about the server.
    static func stolenSeconds() -> Double {
        guard let text = readFile("/proc/stat"), let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return 0 }
        let fields = line.split(separator: " ")
        // cpu user nice system idle iowait irq softirq steal ...
        guard fields.count > 8, let steal = Double(fields[8]) else { return 0 }
        return steal / Double(max(sysconf(Int32(_SC_CLK_TCK)), 1))
    }

    /// Current resident set size in bytes (VmRSS).
    static func currentRSS(pid: Int32) -> Int? { statusField("VmRSS", pid: pid) }

    /// Resets the peak RSS of `pid` to its current RSS (Linux 4.0+), so a peak can be measured per run.
    static func resetPeakRSS(pid: Int32) {
        let fd = open("/proc/\(pid)/clear_refs", O_WRONLY)
        guard fd >= 0 else { return }
        _ = "5".withCString { write(fd, $0, 1) }
        close(fd)
    }

    /// Open file descriptors of `pid`.
    static func openFDs(pid: Int32) -> Int? {
        guard let dir = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(dir) }
        var n = 0
        while let entry = readdir(dir) {
            if entry.pointee.d_name.0 != UInt8(ascii: ".") { n += 1 }
        }
        return n
    }

    private static func statusField(_ name: String, pid: Int32) -> Int? {
        guard let status = readFile("/proc/\(pid)/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kb = Int(parts[1]) else { return nil }
            return kb * 1024
        }
        return nil
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
