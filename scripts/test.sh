#!/usr/bin/env bash
# The test suite, exactly as CI runs it: unit tests of the pure code, end-to-end tests over real sockets, and the
# executables' tests. Extra arguments go to `swift test` (e.g. --filter AsyncComServerTests).
#
# --no-parallel: many tests run real servers with real timeouts. Run side by side on a 2-core machine they starve
# each other (and Swift concurrency's small cooperative pool), which turns generous bounds into flakes. One at a
# time, the suite takes about two minutes and every bound means what it says.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
swift test --no-parallel "$@"
