#!/usr/bin/env bash
# Sourced by the other scripts: makes sure Swift and libevent-dev are there, installing libevent-dev when we can.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH="/opt/swift/usr/bin:$PATH"
fi
if ! command -v swift >/dev/null 2>&1; then
  echo "asynccom: Swift 6 is not on PATH; install it from swift.org (or add its usr/bin to PATH)." >&2
  exit 1
fi
if ! pkg-config --exists libevent_core 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "asynccom: installing libevent-dev (Debian/Ubuntu package) ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq libevent-dev pkg-config >/dev/null
  else
    echo "asynccom: libevent 2.1 development files are missing. Install them with:" >&2
    echo "    sudo apt-get install -y libevent-dev pkg-config" >&2
    exit 1
  fi
fi
