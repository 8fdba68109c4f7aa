#!/usr/bin/env bash
# Installs the reference servers' npm packages (uWebSockets.js for `bandsync-bench
# --spawn-server uws` and scripts/compare.sh), only when missing. The test suite never needs
# them. Needs Node 20 (the package ships native addons for Node ABIs 93, 108 and 115 only)
# and npm; the versions are pinned by package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"

addon=uws/node_modules/@trufflesuite/uws-js-unofficial
if [[ -d $addon ]]; then
  exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node and npm are needed for the uWebSockets.js reference server: install Node.js 20" >&2
  exit 1
fi
echo "== installing the uWebSockets.js reference server's npm packages" >&2
(cd uws && npm ci --no-audit --no-fund --loglevel=error >&2)
