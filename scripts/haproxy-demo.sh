#!/usr/bin/env bash
# asynccom behind HAProxy, end to end: two servers and HAProxy (deploy/haproxy.cfg, TCP mode, PING/PONG health
# check, leastconn) on free loopback ports; a 1,000,000-command job through HAProxy during which one server is
# SIGKILLed (exact sum and exit 0 required); and the throughput of zero-wait jobs through HAProxy vs straight to
# both servers (`--server s1 --server s2`), in the same run. Prints PASS and exits 0, or says what failed.
#
#   scripts/haproxy-demo.sh                      # builds in release first
#   HAPROXY_DEMO_PORTS=53000-53999 HAPROXY_DEMO_DIR=/tmp/x scripts/haproxy-demo.sh
#
# Installs HAProxy from Debian when it is missing (as root; otherwise it prints the apt-get line).
# Environment: HAPROXY_DEMO_PORTS (range to pick free ports from, default 20000-60999), HAPROXY_DEMO_DIR (scratch
# directory, default a fresh one under /tmp, removed at exit), HAPROXY_DEMO_RUNS (throughput runs, default 3),
# ASYNCCOM_BIN (directory with built asynccom-server and asynccom-client; default: swift build -c release).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh

ensure_command haproxy haproxy || exit 1

runs=${HAPROXY_DEMO_RUNS:-3}
if [ -n "${ASYNCCOM_BIN:-}" ]; then
  bin=$ASYNCCOM_BIN
else
  echo "haproxy-demo: building (release) ..." >&2
  swift build -c release >/dev/null
  bin=$(swift build -c release --show-bin-path)
fi

if [ -n "${HAPROXY_DEMO_DIR:-}" ]; then
  dir=$HAPROXY_DEMO_DIR
  mkdir -p "$dir"
  keep_dir=1
else
  dir=$(mktemp -d /tmp/asynccom-haproxy-demo.XXXXXX)
  keep_dir=0
fi

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ "$keep_dir" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT

# --- free loopback ports -------------------------------------------------------------------------------------
range=${HAPROXY_DEMO_PORTS:-20000-60999}
low=${range%-*}
high=${range#*-}
taken=" "
# Ports something listens on now (state 0A = LISTEN in /proc/net/tcp and tcp6).
listening() { awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print strtonum("0x" a[2]) }' /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
free_port() {
  local busy p
  busy=" $(listening | tr '\n' ' ') "
  for _ in $(seq 200); do
    p=$((low + (RANDOM * 32768 + RANDOM) % (high - low + 1)))
    case "$busy$taken" in *" $p "*) continue ;; esac
    taken="$taken$p "
    echo "$p"
    return 0
  done
  echo "haproxy-demo: no free port in $range" >&2
  exit 1
}
front=$(free_port)
port1=$(free_port)
port2=$(free_port)

# --- data: 1,000 devices x 2 commands, each at wait 0 (a, b) and wait 0.5 s (sa, sb) ------------------------
# Entry k (0-1999) answers k; both commands files cycle over the 2,000 entries 500 times: sum 999,500,000.
awk 'BEGIN {
  for (d = 0; d < 1000; d++) {
    ip = sprintf("10.7.%d.%d", int(d / 256), d % 256)
    printf "%s:a:%d:0\n%s:b:%d:0\n%s:sa:%d:0.5\n%s:sb:%d:0.5\n", ip, 2 * d, ip, 2 * d + 1, ip, 2 * d, ip, 2 * d + 1
  } }' >"$dir/map.txt"
for kind in fast slow; do
  prefix=$([ $kind = slow ] && echo s || true)
  awk -v p="$prefix" 'BEGIN {
    for (i = 0; i < 1000000; i++) { k = i % 2000; d = int(k / 2)
      printf "10.7.%d.%d:%s%s\n", int(d / 256), d % 256, p, (k % 2 ? "b" : "a") } }' >"$dir/$kind.txt"
done
expected_sum=999500000

# --- servers and HAProxy -------------------------------------------------------------------------------------
start_server() {  # name port
  "$bin/asynccom-server" --map "$dir/map.txt" --listen "tcp://127.0.0.1:$2" --reactors 2 --log-level warning \
    >"$dir/$1.out" 2>"$dir/$1.err" &
  pids+=($!)
  eval "${1}_pid=$!"
  for _ in $(seq 200); do grep -q '^listening on ' "$dir/$1.out" && return 0; sleep 0.05; done
  echo "haproxy-demo: server $1 did not start: $(cat "$dir/$1.err")" >&2
  exit 1
}
start_server s1 "$port1"
start_server s2 "$port2"

ASYNCCOM_FRONTEND="127.0.0.1:$front" ASYNCCOM_SERVER1="127.0.0.1:$port1" ASYNCCOM_SERVER2="127.0.0.1:$port2" \
  haproxy -f deploy/haproxy.cfg -db >"$dir/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=($haproxy_pid)

# One line exchange with a server or HAProxy: prints the reply line to `request`.
ask() {  # port request
  local fd line
  exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf '%s\nQUIT\n' "$2" >&"$fd"
  IFS= read -r -t 5 line <&"$fd" || { exec {fd}>&-; return 1; }
  exec {fd}>&-
  echo "$line"
}
stat() {  # port key: a total from STATS
  local line
  line=$(ask "$1" STATS) || { echo 0; return; }
  [[ " $line " =~ \ $2=([0-9]+)\  ]] && echo "${BASH_REMATCH[1]}" || echo 0
}
for _ in $(seq 100); do
  [ "$(ask "$front" 'PING via-haproxy' 2>/dev/null)" = "PONG via-haproxy" ] && break
  sleep 0.1
done
[ "$(ask "$front" 'PING via-haproxy' 2>/dev/null)" = "PONG via-haproxy" ] || {
  echo "haproxy-demo: HAProxy does not answer on 127.0.0.1:$front: $(cat "$dir/haproxy.log")" >&2
  exit 1
}
echo "servers on 127.0.0.1:$port1 and :$port2, HAProxy on 127.0.0.1:$front; scratch $dir" >&2

json_field() {  # file key
  grep -o "\"$2\":[-0-9.]*" "$1" | head -n 1 | cut -d: -f2
}
client() {  # out-file args...
  local out=$1
  shift
  "$bin/asynccom-client" --json --quiet --connect-timeout 30 "$@" >"$out" 2>"$out.err"
}

# --- throughput: zero-wait jobs, direct vs through HAProxy, interleaved -------------------------------------
direct=()
proxied=()
for r in $(seq "$runs"); do
  client "$dir/direct-$r.json" --server "tcp://127.0.0.1:$port1" --server "tcp://127.0.0.1:$port2" "$dir/fast.txt"
  client "$dir/proxied-$r.json" --server "tcp://127.0.0.1:$front" "$dir/fast.txt"
  for f in direct proxied; do
    s=$(json_field "$dir/$f-$r.json" sum)
    [ "$s" = "$expected_sum" ] || { echo "haproxy-demo: FAIL: $f run $r: sum $s, expected $expected_sum" >&2; exit 1; }
  done
  direct+=("$(json_field "$dir/direct-$r.json" commands_per_s) $(json_field "$dir/direct-$r.json" elapsed_s)")
  proxied+=("$(json_field "$dir/proxied-$r.json" commands_per_s) $(json_field "$dir/proxied-$r.json" elapsed_s)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }
summary() { median "$@" | awk '{ printf "%.2f M commands/s (%.3f s)", $1 / 1e6, $2 }'; }

# --- failover: a 1,000,000-command job (0.5 s each) through HAProxy, one server SIGKILLed mid-job ------------
base=$(( $(stat "$port1" commands) + $(stat "$port2" commands) ))  # the throughput runs' commands
client "$dir/failover.json" --server "tcp://127.0.0.1:$front" "$dir/slow.txt" &
client_pid=$!
pids+=($client_pid)
read_before=0
for _ in $(seq 600); do
  read_before=$(( $(stat "$port1" commands) + $(stat "$port2" commands) - base ))
  [ "$read_before" -ge 300000 ] && break
  kill -0 "$client_pid" 2>/dev/null || break
  sleep 0.02
done
# Kill the server carrying more of the job right now, so the kill really costs something.
in1=$(stat "$port1" inflight_commands)
in2=$(stat "$port2" inflight_commands)
if [ "$in1" -ge "$in2" ]; then victim=s1 victim_pid=$s1_pid inflight=$in1; else victim=s2 victim_pid=$s2_pid inflight=$in2; fi
kill -0 "$client_pid" 2>/dev/null || { echo "haproxy-demo: FAIL: the job ended before the kill" >&2; exit 1; }
{ kill -KILL "$victim_pid"; wait "$victim_pid"; } 2>/dev/null || true
status=0
wait "$client_pid" || status=$?
sum=$(json_field "$dir/failover.json" sum)
elapsed=$(json_field "$dir/failover.json" elapsed_s)
reconnects=$(json_field "$dir/failover.json" reconnects)
resends=$(json_field "$dir/failover.json" resends)

echo
echo "load: $(uptime | sed 's/.*load average/load average/')"
echo "throughput, 1,000,000 zero-wait commands, median of $runs (client defaults):"
echo "  direct (--server s1 --server s2):  $(summary "${direct[@]}")"
echo "  through HAProxy (--server haproxy): $(summary "${proxied[@]}")"
echo "failover through HAProxy: 1,000,000 commands of 0.5 s; $victim SIGKILLed after $read_before commands read" \
  "($inflight in flight on it)"
echo "  sum $sum (expected $expected_sum), exit $status, $elapsed s, reconnects $reconnects, re-sent requests $resends"
if [ "$status" = 0 ] && [ "$sum" = "$expected_sum" ]; then
  echo "PASS"
else
  echo "FAIL (client stderr: $(cat "$dir/failover.json.err"))"
  exit 1
fi
