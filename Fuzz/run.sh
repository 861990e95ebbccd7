#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ against Sources/AsyncComCore and runs each, one after the other, for a
# bounded time. Crashes are kept under fuzz-artifacts/<target>/; exits non-zero when any target crashed.
#
#   Fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]    default: 60 s, all targets; 0 s builds without running
#   Fuzz/run.sh ci [TARGET...]                      for CI: the seeds in Fuzz/corpus/<target>/, then 100,000
#                                                   inputs mutated from them with a fixed seed (-seed=1) and a
#                                                   fresh scratch corpus: the same inputs every run, a few
#                                                   seconds per target; a crash is reproducible as is
#
# Needs only a Swift toolchain (libFuzzer and ASan ship with it). SWIFTC overrides the compiler.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[[ $# -gt 0 ]] && shift
ci=0
if [[ $seconds == ci ]]; then ci=1; seconds=1; fi
all=(request reply map commands address auth body)
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all[@]}"); fi
if ! [[ $seconds =~ ^[0-9]+$ ]]; then echo "usage: Fuzz/run.sh [SECONDS_PER_TARGET|ci] [${all[*]}]" >&2; exit 2; fi

declare -A source=([request]=FuzzRequest [reply]=FuzzReply [map]=FuzzDeviceMap [commands]=FuzzCommands
                   [address]=FuzzAddress [auth]=FuzzAuth [body]=FuzzCommandsBody)
# A map file needs room for many lines; everything else is one peer line or a few.
declare -A maxlen=([request]=4096 [reply]=4096 [map]=16384 [commands]=4096 [address]=4096 [auth]=4096 [body]=4096)
for t in "${targets[@]}"; do
    [[ -n ${source[$t]:-} ]] || { echo "unknown target '$t' (targets: ${all[*]})" >&2; exit 2; }
done

swiftc=${SWIFTC:-$(command -v swiftc || echo /opt/swift/usr/bin/swiftc)}
build=.build-fuzz
artifacts=fuzz-artifacts
mkdir -p "$build/logs" "$artifacts"

# -package-name: Core has `package` declarations (SwiftPM passes the name; swiftc needs it given).
# -I: Core imports CPrefetch, a C module (one inline function) found by its include/module.modulemap.
flags=(-swift-version 6 -parse-as-library -package-name asynccom -O -g -sanitize=fuzzer,address
    -I Sources/CPrefetch/include)
# The toolchain's lld links the sanitizer runtimes cleanly; gold works too but prints pages of warnings about
# "local symbol" exports.
linkflags=()
if [[ -x $(dirname "$swiftc")/ld.lld ]] || command -v ld.lld >/dev/null; then linkflags=(-use-ld=lld); fi

newer() {  # newer OUTPUT INPUT...: true when OUTPUT is missing or older than an input
    local out=$1; shift
    [[ -e $out ]] || return 0
    local f
    for f in "$@"; do [[ $f -nt $out ]] && return 0; done
    return 1
}

# Core's one dependency, swift-collections' HeapModule (with its InternalCollectionsUtilities), from the checkout
# SwiftPM resolves, built with the settings of swift-collections' own Package.swift (ASan, no fuzzer coverage).
collections=.build/checkouts/swift-collections
[[ -d $collections/Sources/HeapModule ]] || swift package resolve >/dev/null \
    || { echo "swift package resolve failed (needed for swift-collections)" >&2; exit 2; }
heapflags=(-swift-version 5 -parse-as-library -package-name swift_collections -O -g -sanitize=address
    -enable-upcoming-feature MemberImportVisibility -enable-experimental-feature BuiltinModule
    -enable-experimental-feature Lifetimes -enable-experimental-feature InoutLifetimeDependence
    -enable-experimental-feature AddressableParameters -enable-experimental-feature AddressableTypes
    -enable-experimental-feature SuppressedAssociatedTypesWithDefaults)
for v in 5.0 5.1 5.6 5.7 5.8 5.9 5.10 6.0 6.1 6.2 6.3 6.4 6.5; do
    heapflags+=(-enable-experimental-feature "AvailabilityMacro=SwiftStdlib $v: macOS 9999")
done
for m in InternalCollectionsUtilities HeapModule; do
    mapfile -d '' module_sources < <(find "$collections/Sources/$m" -name '*.swift' -print0)
    if newer "$build/lib$m.a" "${module_sources[@]}" "$0"; then
        echo "building $m..."
        "$swiftc" "${heapflags[@]}" -wmo -module-name "$m" -I "$build" -emit-module \
            -emit-module-path "$build/$m.swiftmodule" -emit-library -static -o "$build/lib$m.a" \
            "${module_sources[@]}" || { echo "build of $m failed" >&2; exit 2; }
    fi
done

# AsyncComCore once, instrumented (coverage + ASan), as a static library the targets import.
core_sources=(Sources/AsyncComCore/*.swift)
if newer "$build/libAsyncComCore.a" "${core_sources[@]}" Sources/CPrefetch/include/* "$build/libHeapModule.a" "$0"; then
    echo "building AsyncComCore (instrumented)..."
    "$swiftc" "${flags[@]}" -wmo -module-name AsyncComCore -I "$build" -emit-module \
        -emit-module-path "$build/AsyncComCore.swiftmodule" -emit-library -static \
        -o "$build/libAsyncComCore.a" "${core_sources[@]}" || { echo "build of AsyncComCore failed" >&2; exit 2; }
fi

for t in "${targets[@]}"; do
    src=Fuzz/${source[$t]}.swift
    if newer "$build/fuzz-$t" "$src" Fuzz/Support/FuzzSupport.swift "$build/libAsyncComCore.a"; then
        echo "building fuzz-$t..."
        "$swiftc" "${flags[@]}" "${linkflags[@]}" -module-name "${source[$t]}" -I "$build" -L "$build" \
            -lAsyncComCore -lHeapModule -lInternalCollectionsUtilities Fuzz/Support/FuzzSupport.swift "$src" -o "$build/fuzz-$t" \
            || { echo "build of fuzz-$t failed" >&2; exit 2; }
    fi
done
[[ $seconds -eq 0 ]] && { echo "built in $build/ (not run: 0 seconds)"; exit 0; }

failed=0
for t in "${targets[@]}"; do
    mkdir -p "$build/corpus/$t" "$artifacts/$t"
    if [[ $ci -eq 1 ]]; then
        # A fixed seed, the repo's seeds and an empty scratch corpus (not the one earlier runs grew): every CI run
        # tries the same inputs, so a red run is the change's, and replays.
        log=$build/logs/$t-ci.log
        corpus=$(mktemp -d)
        limits=(-seed=1 -runs=100000)
        what="inputs with -seed=1"
        echo "fuzzing $t: 100000 inputs with -seed=1 (log: $log)..."
    else
        log=$build/logs/$t.log
        corpus=$build/corpus/$t
        limits=(-max_total_time="$seconds")
        what="executions in ${seconds}s"
        echo "fuzzing $t for ${seconds}s (log: $log)..."
    fi
    # The Swift runtime's backtracer would otherwise be started on a crash and can hang the run; libFuzzer and
    # ASan print their own stack. New inputs go to the first (scratch) corpus, never into the repo's seeds.
    SWIFT_BACKTRACE=enable=no timeout -k 10 $((seconds + 900)) "$build/fuzz-$t" "${limits[@]}" \
        -max_len="${maxlen[$t]}" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$t/" "$corpus" "Fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    [[ $ci -eq 1 ]] && rm -rf "$corpus"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [[ -n $execs ]] || execs=$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')
    if [[ $rc -eq 0 ]]; then
        printf '%-9s %10s %s: clean\n' "$t" "${execs:-?}" "$what"
    else
        failed=1
        printf '%-9s %10s %s: CRASHED (exit %s), input in %s/%s/, log %s\n' \
            "$t" "${execs:-?}" "$what" "$rc" "$artifacts" "$t" "$log"
        grep -m 3 -E 'INVARIANT VIOLATED|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|Fatal error' "$log" | sed 's/^/    /'
    fi
done
exit $failed
