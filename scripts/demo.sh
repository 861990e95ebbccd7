#!/usr/bin/env bash
# The main job in one command: build in release, start a server on the seed device map, send the seed's 512
# commands (1 s each) in pipelined batches of 16, print the result and the time, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
echo "building (release) ..." >&2
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)

out=$(mktemp)
"$bin/asynccom-server" --map data/seed/map.txt --listen tcp://127.0.0.1:0 --log-level warning >"$out" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$out"' EXIT
# The server prints `listening on tcp://127.0.0.1:PORT` once bound (port 0 = any free port).
for _ in $(seq 200); do grep -q '^listening on ' "$out" && break; sleep 0.05; done
endpoint=$(sed -n 's/^listening on //p' "$out" | head -n 1)
[ -n "$endpoint" ] || { echo "asynccom: the server did not start" >&2; exit 1; }

echo "server on $endpoint; running: asynccom-client --server $endpoint --batch 16 data/seed/commands.txt" >&2
status=0
"$bin/asynccom-client" --server "$endpoint" --batch 16 data/seed/commands.txt || status=$?
kill -TERM $server && wait $server || true
exit $status
