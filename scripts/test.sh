#!/usr/bin/env bash
# The test suite, exactly as CI runs it: unit tests of the pure code, end-to-end tests over real sockets, and the
# executables' tests. Extra arguments go to `swift test` (e.g. --filter AsyncComServerTests).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
swift test "$@"
