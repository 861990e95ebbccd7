/// LeakSanitizer suppressions compiled into the test bundle (LSan looks this weak symbol up at exit), so that
/// `swift test --sanitize=address` passes without extra options. Only leaks of the toolchain's libraries are
/// suppressed: XCTest's runner objects (the bundle's XCTest pass exits with them alive) and a weak-reference side
/// table that Foundation's `Process.run` never frees. Leaks in asynccom code still fail the run.
@_cdecl("__lsan_default_suppressions")
public func lsanDefaultSuppressions() -> UnsafePointer<CChar> {
    let text: StaticString = "leak:libXCTest.so\nleak:Foundation7ProcessC3run\nleak:Foundation.Process.run\n"
    return UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
}
