#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, only where it is missing:
# Debian's redis-server (for the cluster tests, which start their own), Debian's prometheus
# (promtool, for the alert rules), the ALSA headers (to lint the client's playback feature),
# Debian's chromium (for the browser test), the browser test's npm packages, the Socket.IO
# tests' npm package (socket.io-client, for tests/socketio.rs and tests/cluster_socketio.rs), and schemathesis
# (for tests/openapi.rs) in a virtual environment under ~/.cache/bandsync.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing redis-server (Debian package; the tests start and stop their own)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing: run 'sudo apt-get install -y redis-server'" >&2
    exit 1
  fi
fi

# promtool (Debian's prometheus package) checks and unit-tests deploy/prometheus/alerts.yml
# (tests/operations.rs).
if ! command -v promtool >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing prometheus (Debian package, for promtool)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "promtool is missing: run 'sudo apt-get install -y prometheus'" >&2
    exit 1
  fi
fi

# ALSA headers: the client's `playback` feature (rodio, cpal) is linted in scripts/test.sh.
if ! pkg-config --exists alsa 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing the ALSA headers (Debian's libasound2-dev, for the playback feature)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libasound2-dev pkg-config >/dev/null
  else
    echo "the ALSA headers are missing: run 'sudo apt-get install -y libasound2-dev pkg-config'" >&2
    exit 1
  fi
fi

if [[ "${BANDSYNC_SKIP_BROWSER:-0}" != "1" ]]; then
  if [[ ! -x /usr/bin/chromium ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      echo "== installing chromium (Debian package)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "chromium is missing: run 'sudo apt-get install -y chromium' or set BANDSYNC_SKIP_BROWSER=1" >&2
      exit 1
    fi
  fi
  if ! command -v node >/dev/null; then
    echo "node is missing: install Node.js 18+ or set BANDSYNC_SKIP_BROWSER=1" >&2
    exit 1
  fi
  if [[ ! -d tests/browser/node_modules ]]; then
    echo "== installing the browser test's npm packages"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

if [[ "${BANDSYNC_SKIP_SOCKETIO:-0}" != "1" ]]; then
  if [[ ! -d tests/socketio/node_modules/socket.io-client ]]; then
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      echo "node and npm are needed for the Socket.IO tests: install Node.js 18+ with npm or set BANDSYNC_SKIP_SOCKETIO=1" >&2
      exit 1
    fi
    echo "== installing the Socket.IO tests' npm packages"
    (cd tests/socketio && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

# schemathesis checks the server against static/openapi.json (tests/openapi.rs). A venv in
# the user's cache, not the system Python: Debian's Python refuses `pip install` outside one.
SCHEMATHESIS_VERSION=4.32.5
venv="${XDG_CACHE_HOME:-$HOME/.cache}/bandsync/schemathesis"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      echo "== installing python3-venv (Debian package)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
      echo "python3 -m venv is missing: run 'sudo apt-get install -y python3-venv'" >&2
      exit 1
    fi
  fi
  echo "== installing schemathesis $SCHEMATHESIS_VERSION in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
