#!/usr/bin/env bash
# Sourced by the other scripts: makes sure Swift and libevent-dev are there, installing libevent-dev when we can.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH="/opt/swift/usr/bin:$PATH"
fi
if ! command -v swift >/dev/null 2>&1; then
  echo "asynccom: Swift 6 is not on PATH; install it from swift.org (or add its usr/bin to PATH)." >&2
  exit 1
fi
# libevent-dev (the event loops), libssl-dev (OpenSSL 3: TLS) and the openssl command (the TLS tests make their
# certificates with it).
if ! pkg-config --exists libevent_core 2>/dev/null || ! pkg-config --exists openssl 2>/dev/null \
    || ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "asynccom: installing libevent-dev, libssl-dev and openssl (Debian/Ubuntu packages) ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq libevent-dev libssl-dev openssl pkg-config >/dev/null
  else
    echo "asynccom: libevent 2.1 or OpenSSL 3 development files are missing. Install them with:" >&2
    echo "    sudo apt-get install -y libevent-dev libssl-dev openssl pkg-config" >&2
    exit 1
  fi
fi

# What scripts/http-check.sh needs beyond the build: curl, promtool and a Prometheus server (Debian's
# `prometheus`), and a Python venv (python3-venv) with requests and schemathesis from PyPI, kept in
# .build/http-check-venv. Installs what is missing when we can (root), otherwise says what to run.
ensure_http_check_deps() {
  local missing=()
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "asynccom: installing ${missing[*]} (Debian/Ubuntu packages) ..." >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "asynccom: missing ${missing[*]}. Install with: sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  local venv=.build/http-check-venv
  if ! "$venv/bin/python" -c 'import requests, schemathesis' >/dev/null 2>&1; then
    echo "asynccom: setting up $venv (requests, schemathesis from PyPI) ..." >&2
    mkdir -p .build
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "requests>=2.31" "schemathesis>=4.0,<5"
  fi
}

# ensure_command COMMAND PACKAGE: installs the Debian PACKAGE when COMMAND is missing (as root), or says how.
ensure_command() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "asynccom: installing $2 (Debian package) ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    echo "asynccom: $1 is missing. Install it with:  sudo apt-get install -y $2" >&2
    return 1
  fi
}
