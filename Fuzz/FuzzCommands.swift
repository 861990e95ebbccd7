// Fuzz target "commands": arbitrary bytes as a commands file. The bytes go into a scratch file that LineReader opens by
// path (/proc/self/fd/N), so its real read(2) path runs; the lines it hands out are compared with a reference
// splitter, and each goes through CommandsFile.parse, checked against a reference item parser.
#if canImport(Glibc)
import Glibc
#endif
import AsyncComCore

/// Small, so that too-long lines are easy to reach (real files use 1 MiB).
private let maxLine = 128
private let fileName = "fuzz-commands.txt"

/// One scratch file for the whole run, rewritten for each input. Unlinked at once: LineReader reopens it through
/// /proc/self/fd, and nothing is left behind however the run ends. (memfd_create is not imported by Glibc.)
private let scratchFile: Int32 = {
    var template = Array("/tmp/asynccom-fuzz-commands-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    if fd < 0 { fail("mkstemp failed: errno \(errno)") }
    _ = template.withUnsafeBufferPointer { unlink($0.baseAddress!) }
    return fd
}()

private enum RefLine {
    case line([UInt8])
    case error  // a NUL byte or a line over maxLine: LineReader must throw on this line and stop
}

/// What LineReader must hand out: LF-split lines, one CR before the LF (or at the end of file) dropped.
private func referenceRead(_ input: UnsafeRawBufferPointer) -> [RefLine] {
    var out: [RefLine] = []
    for raw in referenceLines(input) {
        var line = Array(raw)
        if line.last == 0x0D { line.removeLast() }
        if raw.contains(0) || line.count > maxLine {
            out.append(.error)
            break
        }
        out.append(.line(line))
    }
    return out
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let fd = scratchFile
    require(ftruncate(fd, 0) == 0, "ftruncate: errno \(errno)")
    var written = 0
    while written < size {
        let n = pwrite(fd, data + written, size - written, off_t(written))
        require(n > 0, "pwrite: errno \(errno)")
        written += n
    }

    let expected = referenceRead(input)
    let reader: LineReader
    do throws(InputFileError) {
        reader = try LineReader(path: "/proc/self/fd/\(fd)", maxLine: maxLine)
    } catch {
        fail("cannot open the scratch file: \(error)")
    }
    var number = 0
    while true {
        let got: (line: UnsafeRawBufferPointer, number: Int)?
        do throws(InputFileError) {
            got = try reader.next()
        } catch {
            require(number < expected.count, "error \(error) after all \(expected.count) lines")
            guard case .error = expected[number] else { fail("error \(error), reference line \(number + 1) is fine") }
            require(error.line == number + 1 && !error.description.utf8.contains(0x0A), "error \(error) for line \(number + 1)")
            // Sticky: a reader that failed keeps failing the same way.
            do throws(InputFileError) {
                _ = try reader.next()
                fail("next() after an error succeeded")
            } catch let again {
                require(again == error, "second error \(again), first \(error)")
            }
            return 0
        }
        guard let (line, lineNumber) = got else {
            require(number == expected.count, "end of file after \(number) lines, reference has \(expected.count)")
            return 0
        }
        number += 1
        require(lineNumber == number && number <= expected.count, "line number \(lineNumber), expected \(number)")
        guard case .line(let ref) = expected[number - 1] else { fail("line \(number) \(show(line)) should fail") }
        require(Array(line) == ref, "line \(number) is \(show(line)), reference \(show(ref))")
        checkParse(line, number: number)
    }
}

private func checkParse(_ line: UnsafeRawBufferPointer, number: Int) {
    let parsed = CommandsFile.parse(line: line, number: number, fileName: fileName)
    var s = 0
    var e = line.count
    while s < e && isBlank(line[s]) { s += 1 }
    while e > s && (isBlank(line[e - 1]) || line[e - 1] == 0x0D) { e -= 1 }
    let item = UnsafeRawBufferPointer(rebasing: line[s..<e])
    let context = "line \(number) \(show(line)) -> \(parsed)"
    switch parsed {
    case .skip:
        require(item.isEmpty || item[0] == UInt8(ascii: "#"), context)
    case .command(let entry):
        guard let (device, command) = referenceItem(item) else { fail("reference rejects it: \(context)") }
        require(!item.isEmpty && item[0] != UInt8(ascii: "#"), context)
        require(entry.line == number && entry.device == device && Array(entry.item.utf8) == Array(item)
                    && Array(entry.command.utf8) == Array(command) && entry.commandStart == item.count - command.count,
                context)
    case .malformed(let error):
        require(!item.isEmpty && item[0] != UInt8(ascii: "#") && referenceItem(item) == nil, context)
        require(error.file == fileName && error.line == number && !error.description.utf8.contains(0x0A), context)
    }
}
