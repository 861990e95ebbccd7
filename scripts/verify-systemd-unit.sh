#!/usr/bin/env bash
# Checks deploy/asynccom-server.service with `systemd-analyze verify` (installs systemd from Debian when it is
# missing and we are root). verify needs the ExecStart binary to exist, so the unit is checked from a copy whose
# ExecStart points at the built asynccom-server (ASYNCCOM_BIN, default: swift build -c release --show-bin-path).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
ensure_command systemd-analyze systemd || exit 1
bin=${ASYNCCOM_BIN:-}
if [ -z "$bin" ]; then
  swift build -c release --product asynccom-server >/dev/null
  bin=$(swift build -c release --show-bin-path)
fi
[ -x "$bin/asynccom-server" ] || { echo "verify-systemd-unit: no asynccom-server in $bin" >&2; exit 1; }
dir=$(mktemp -d /tmp/asynccom-unit.XXXXXX)
trap 'rm -rf "$dir"' EXIT
sed "s|/usr/local/bin/asynccom-server|$bin/asynccom-server|" deploy/asynccom-server.service >"$dir/asynccom-server.service"
# Warnings and errors go to stderr; verify's exit status is not 0 on errors. Treat any output as a failure too.
out=$(systemd-analyze verify "$dir/asynccom-server.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2
  exit 1
fi
echo "deploy/asynccom-server.service: systemd-analyze verify OK ($(systemd-analyze --version | head -n 1))"
