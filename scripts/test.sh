#!/usr/bin/env bash
# The test suite, exactly as CI runs it: unit tests of the pure code, end-to-end tests over real sockets, and the
# executables' tests. Extra arguments go to `swift test` (e.g. --filter AsyncComServerTests).
#
# In parallel (plain `swift test`): about half the time of a run one test at a time. Tests that run real servers
# or processes first take a share of the machine (`.machineSlot` in Tests/AsyncComTestSupport/MachineSlots.swift:
# eight waiting tests or two busy ones at once, the time limit starting once the share is held) and block only
# on threads of their own (`blocking {}`), never on Swift concurrency's two-thread pool, so a loaded 2-core
# machine slows the run down without turning timeouts into flakes. `--no-parallel` (passed through) still works.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
swift test "$@"
