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
