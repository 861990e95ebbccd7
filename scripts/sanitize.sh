#!/usr/bin/env bash
# The test suite under a sanitizer, in its own scratch directory (the instrumented build never mixes with the
# normal one):
#
#   scripts/sanitize.sh address [swift test args...]    AddressSanitizer + LeakSanitizer, .build-asan
#   scripts/sanitize.sh thread  [swift test args...]    ThreadSanitizer, .build-tsan
#
# The executables the tests spawn (asynccom-server, asynccom-client) are built instrumented too, so a leak or a
# race in them fails the test that ran them (their exit status changes). LeakSanitizer suppressions for the
# toolchain's own leaks (XCTest, Foundation's Process) are compiled into the test bundle (Tests/AsyncComServerTests/LeakSuppressions.swift).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-}
case "$kind" in
  address) scratch=.build-asan ;;
  thread) scratch=.build-tsan ;;
  *) echo "usage: scripts/sanitize.sh address|thread [swift test args...]" >&2; exit 2 ;;
esac
shift
source scripts/ensure-deps.sh
# The toolchain's lld links the sanitizer runtimes cleanly (and faster); gold prints hundreds of warnings about
# exporting the runtime's local symbols.
linker=()
if [[ -x $(dirname "$(command -v swift)")/ld.lld ]] || command -v ld.lld >/dev/null; then linker=(-Xswiftc -use-ld=lld); fi
# --no-parallel (scripts/test.sh runs in parallel): an instrumented build is several times slower, and its
# tests' real timeouts are sized for one test at a time.
# The spawned executables inherit this: OpenSSL's own allocations are not ours to free (scripts/lsan-suppressions.txt).
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan-suppressions.txt${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
swift test --no-parallel --sanitize="$kind" --scratch-path "$scratch" "${linker[@]}" "$@"
