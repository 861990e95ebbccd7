#!/usr/bin/env bash
# The HTTP API (`--http-listen`) checked from outside, the way its users meet it, against a live server on the
# seed map (CI runs this after the test suite):
#   1. curl: the README's examples give the documented bodies and statuses;
#   2. Python requests: the README's Python example runs and prints the right sum;
#   3. promtool check metrics on GET /metrics;
#   4. a real Prometheus server scrapes it (up == 1, asynccom_* series present);
#   5. schemathesis runs docs/openapi.yaml against it (every check, scripts/schemathesis.toml).
# Ends with `N passed, M failed`; exits 1 when any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
ensure_http_check_deps
venv=.build/http-check-venv
swift build >/dev/null
bin=$(swift build --show-bin-path)

scratch=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT

passed=0
failed=0
check() {  # check NAME COMMAND...: runs it, counts it
  local name=$1; shift
  if "$@" >"$scratch/check.log" 2>&1; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' "$scratch/check.log" | tail -n 40
  fi
}

"$bin/asynccom-server" --map data/seed/map.txt --listen tcp://127.0.0.1:0 --http-listen tcp://127.0.0.1:0 \
  --reactors 2 --log-level warning >"$scratch/server.out" 2>"$scratch/server.err" &
pids+=($!)
for _ in $(seq 200); do grep -q '^listening for HTTP on ' "$scratch/server.out" && break; sleep 0.05; done
endpoint=$(sed -n 's/^listening for HTTP on tcp:\/\///p' "$scratch/server.out" | head -n 1)
[ -n "$endpoint" ] || { echo "http-check: the server did not start: $(cat "$scratch/server.err")" >&2; exit 1; }
base=http://$endpoint
echo "server: $base"

expect_body() {  # expect_body EXPECTED_STATUS EXPECTED_BODY CURL_ARGS...
  local status=$1 body=$2; shift 2
  local got
  got=$(curl -s -w '%{http_code}' "$@")
  [ "$got" = "$body"$'\n'"$status" ] || { echo "expected $status $body"; echo "got: $got"; return 1; }
}
check "curl POST /v1/commands (JSON)" expect_body 200 '{"results":[1,null,1],"sum":2,"unknown":1}' \
  -H 'Content-Type: application/json' -d '{"items": ["137.72.95.0:foo", "10.9.9.9:foo", "137.72.95.1:bar"]}' "$base/v1/commands"
check "curl POST /v1/commands (text/plain)" expect_body 200 '{"results":[1,1],"sum":2,"unknown":0}' \
  -H 'Content-Type: text/plain' --data-binary $'137.72.95.0:foo\n137.72.95.2:bar\n' "$base/v1/commands"
check "curl bad item: 400 BAD_ITEM with index" expect_body 400 \
  '{"error":{"code":"BAD_ITEM","message":"items[1]: invalid device address","index":1}}' \
  -d '{"items": ["137.72.95.0:foo", "137.72.95.300:foo"]}' "$base/v1/commands"
check "curl GET /healthz" expect_body 200 '{"status":"ok"}' "$base/healthz"
check "curl GET /readyz" expect_body 200 '{"status":"ready"}' "$base/readyz"

# The README's Python example, as written there (the ```python block of its HTTP API section).
awk '/^## HTTP API/ {s=1} s && /^```python/ {c=1; next} c && /^```/ {exit} c' README.md \
  | sed "s|http://127.0.0.1:8080|$base|" >"$scratch/example.py"
python_example() {
  [ -s "$scratch/example.py" ] || { echo "no python block in README's HTTP API section"; return 1; }
  local out; out=$("$venv/bin/python" "$scratch/example.py")
  echo "$out"
  grep -qx 'sum: 2, unknown: 1, results: \[1, None, 1\]' <<<"$out"
}
check "Python requests (README example)" python_example

check "promtool check metrics" bash -c "curl -sf '$base/metrics' | promtool check metrics"

prom_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$scratch/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: asynccom
    static_configs:
      - targets: ["$endpoint"]
YAML
prometheus --config.file="$scratch/prometheus.yml" --storage.tsdb.path="$scratch/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$scratch/prometheus.log" 2>&1 &
pids+=($!)
scraped() {
  local q
  for _ in $(seq 60); do
    q=$(curl -s "http://127.0.0.1:$prom_port/api/v1/query?query=asynccom_requests_total" || true)
    if grep -q '"reactor":"1"' <<<"$q" && curl -s "http://127.0.0.1:$prom_port/api/v1/query?query=up" | grep -q '"value":\[[0-9.]*,"1"\]'; then
      echo "$q"; return 0
    fi
    sleep 0.5
  done
  echo "no scrape after 30 s: $q"; tail -n 20 "$scratch/prometheus.log"; return 1
}
check "Prometheus scrapes /metrics (up == 1, asynccom_requests_total per reactor)" scraped

check "schemathesis docs/openapi.yaml (all checks)" \
  "$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run docs/openapi.yaml --url "$base" --checks all \
  --seed 12 --no-color

echo "http-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
