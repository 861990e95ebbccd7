#!/usr/bin/env bash
# Soak: steady mixed load on one asynccom-server for SECONDS (default 180), loopback only; checks that the
# server's memory and descriptors stay flat once warmed up.
#
#   scripts/soak.sh [SECONDS]          e.g. scripts/soak.sh 600, or: nice scripts/soak.sh 600
#
# Builds the release binaries if needed, generates a map (20,000 entries, waits 0-0.2 s in 1 ms steps) and a
# 100,000-line commands file (1% unknown devices) with `asynccom-bench generate`, starts the server on a free
# port, then until the time is up: runs asynccom-client jobs back to back (each must exit 0 with the expected
# sum), and between jobs opens short-lived connections (a request answered, a request abandoned by closing, an
# idle connect, garbage). Every 5 s it samples the server's VmRSS, open descriptors and STATS into a CSV.
#
# Verdict, over the samples after the warm-up (the first 20%): the largest RSS of the last quarter is within
# 10% + 4 MiB of the first post-warm-up sample, and descriptors not accounted for by open connections stay
# equal. Prints PASS or FAIL with the figures; exits 1 on FAIL (or when a job or the server fails).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-180}
case "$duration" in ''|*[!0-9]*) echo "usage: scripts/soak.sh [SECONDS] (whole seconds, 30 to 86400)" >&2; exit 2 ;; esac
if [ "$duration" -lt 30 ] || [ "$duration" -gt 86400 ]; then
  echo "soak: SECONDS must be 30 to 86400" >&2
  exit 2
fi
interval=5

source scripts/ensure-deps.sh
echo "soak: building (release) ..." >&2
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)

dir="scratch/soak/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$dir"
csv="$dir/samples.csv"
log="$dir/server.log"
"$bin/asynccom-bench" generate --devices 10000 --commands foo,bar --wait 0..0.2 --unknown 0.01 --repeat 5 \
  --response random:-1000..1000 --seed 7 --out "$dir" >"$dir/generate.txt"
expected_sum=$(sed -n 's/^expected: sum=\([-0-9]*\) .*/\1/p' "$dir/generate.txt")
expected_commands=$(sed -n 's/^expected: sum=[-0-9]* ok=\([0-9]*\) unknown=\([0-9]*\) .*/\1 \2/p' "$dir/generate.txt" |
  awk '{print $1 + $2}')
[ -n "$expected_sum" ] && [ -n "$expected_commands" ] || { echo "soak: asynccom-bench generate said: $(cat "$dir/generate.txt")" >&2; exit 1; }

"$bin/asynccom-server" --map "$dir/map.txt" --listen tcp://127.0.0.1:0 --reactors 2 --idle-timeout 5 \
  --log-level warning >"$dir/server.out" 2>"$log" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  jobs -p | xargs -r kill 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 200); do grep -q '^listening on ' "$dir/server.out" && break; sleep 0.05; done
endpoint=$(sed -n 's/^listening on //p' "$dir/server.out" | head -n 1)
[ -n "$endpoint" ] || { echo "soak: the server did not start: $(cat "$log")" >&2; exit 1; }
port=${endpoint##*:}
echo "soak: server pid $server on $endpoint for ${duration} s; samples in $csv" >&2

# One STATS exchange; prints `connections commands` of the totals.
stats() {
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'STATS\n' >&3
  local line
  IFS= read -r -t 10 line <&3 || true
  exec 3>&-
  echo "$line" | tr ' ' '\n' | awk -F= '$1=="connections"{c=$2} $1=="commands"{n=$2} END{print c, n}'
}

# Descriptors of the server not explained by connections: listeners, eventfds, epoll, stdio. The STATS
# connection is open while /proc is read, so it counts on both sides; retried when a connection came or went.
sample() {
  local t=$1 rss fds conns cmds base attempt
  for attempt in 1 2 3 4 5; do
    exec 4<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'STATS\n' >&4
    local before after
    IFS= read -r -t 10 before <&4 || true
    fds=$(ls "/proc/$server/fd" | wc -l)
    printf 'STATS\n' >&4
    IFS= read -r -t 10 after <&4 || true
    exec 4>&-
    conns=$(echo "$before" | tr ' ' '\n' | awk -F= '$1=="connections"{print $2}')
    local conns2
    conns2=$(echo "$after" | tr ' ' '\n' | awk -F= '$1=="connections"{print $2}')
    cmds=$(echo "$after" | tr ' ' '\n' | awk -F= '$1=="commands"{print $2}')
    [ -n "$conns" ] && [ "$conns" = "$conns2" ] && break
  done
  rss=$(awk '/^VmRSS:/{print $2}' "/proc/$server/status")
  base=$((fds - conns))
  echo "$t,$rss,$fds,$conns,$base,$cmds" >>"$csv"
}

# Short-lived connections between jobs: answered, abandoned with replies pending, idle, garbage.
short_lived() {
  { exec 5<>"/dev/tcp/127.0.0.1/$port" && printf 'REQ 1 10.0.0.1:foo\nQUIT\n' >&5 && timeout 5 cat <&5 >/dev/null; exec 5>&-; } || true
  { exec 5<>"/dev/tcp/127.0.0.1/$port" && printf 'REQ 1 10.0.0.1:foo 10.0.0.2:bar\nREQ 2 10.0.0.3:foo\n' >&5; exec 5>&-; } || true
  { exec 5<>"/dev/tcp/127.0.0.1/$port"; exec 5>&-; } || true
  { exec 5<>"/dev/tcp/127.0.0.1/$port" && head -c 3000 /dev/urandom >&5 && printf '\nPING x\n' >&5 && timeout 5 head -c 1 <&5 >/dev/null; exec 5>&-; } || true
}

echo "t_s,rss_kib,fds,connections,fds_not_connections,commands" >"$csv"
start=$(date +%s)
(
  while true; do
    now=$(date +%s)
    [ $((now - start)) -gt "$duration" ] && break
    sample $((now - start)) || true
    sleep "$interval"
  done
) &
sampler=$!

jobs_run=0
jobs_failed=0
answered=0
while [ $(( $(date +%s) - start )) -lt "$duration" ]; do
  status=0
  out=$("$bin/asynccom-client" --server "$endpoint" --batch 16 --window 256 --json --quiet "$dir/commands.txt" \
    2>>"$dir/client.err") || status=$?
  jobs_run=$((jobs_run + 1))
  sum=$(echo "$out" | sed -n 's/.*"sum":\([-0-9]*\).*/\1/p')
  ok=$(echo "$out" | sed -n 's/.*"ok":\([0-9]*\).*/\1/p')
  unknown=$(echo "$out" | sed -n 's/.*"unknown":\([0-9]*\).*/\1/p')
  if [ "$status" != 0 ] || [ "$sum" != "$expected_sum" ] || [ $((ok + unknown)) != "$expected_commands" ]; then
    jobs_failed=$((jobs_failed + 1))
    echo "soak: job $jobs_run failed: status $status, summary $out" >&2
  else
    answered=$((answered + ok + unknown))
  fi
  short_lived
done
wait "$sampler" || true

kill -0 "$server" 2>/dev/null || { echo "soak: FAIL: the server died; $(tail -5 "$log")" >&2; exit 1; }
kill -TERM "$server"
server_status=0
wait "$server" || server_status=$?
trap - EXIT

samples=$(($(wc -l <"$csv") - 1))
verdict=$(awk -F, -v d="$duration" '
  NR == 1 { next }
  { t[++n] = $1; rss[n] = $2; base[n] = $5 }
  END {
    warm = 0.2 * d; first = 0
    for (i = 1; i <= n; i++) if (t[i] >= warm) { first = i; break }
    if (first == 0 || n - first < 3) { print "FAIL too few samples after the warm-up (" n " in all)"; exit }
    quarter = d - 0.25 * d; maxlast = 0; maxall = 0; fdok = 1; fdmin = base[first]; fdmax = base[first]
    for (i = first; i <= n; i++) {
      if (rss[i] > maxall) maxall = rss[i]
      if (t[i] >= quarter && rss[i] > maxlast) maxlast = rss[i]
      if (base[i] != base[first]) fdok = 0
      if (base[i] < fdmin) fdmin = base[i]; if (base[i] > fdmax) fdmax = base[i]
    }
    limit = rss[first] * 1.10 + 4096
    ok = (maxlast <= limit) && fdok
    printf "%s rss_kib start=%d end=%d max=%d last_quarter_max=%d limit=%d; fds_not_connections=%d..%d; samples=%d\n",
      ok ? "PASS" : "FAIL", rss[first], rss[n], maxall, maxlast, limit, fdmin, fdmax, n - first + 1
  }' "$csv")

echo "soak: ${duration} s, $jobs_run jobs ($jobs_failed failed), $answered commands answered, server exit $server_status"
echo "soak: $verdict"
echo "soak: samples in $csv"
case "$verdict" in PASS*) ;; *) exit 1 ;; esac
[ "$jobs_failed" = 0 ] && [ "$server_status" = 0 ] || { echo "soak: FAIL (jobs or server exit)"; exit 1; }
