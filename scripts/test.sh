#!/usr/bin/env bash
# The test command: installs the pinned CLIs and the SSE client packages if they are missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# One NAME=value line per CLI; every one of them is exported.
set -a
eval "$(scripts/install-clis.sh)"
set +a
# The stock SSE clients that tests/api/sse_clients.rs runs with Node, as pinned by their package-lock.json;
# installed again only when the lock file has changed since the last install.
sse_clients=tests/sse-clients
if ! cmp -s "$sse_clients/package-lock.json" "$sse_clients/node_modules/.installed-lock.json"; then
  echo "installing the SSE client packages into $sse_clients/node_modules" >&2
  (cd "$sse_clients" && npm ci --silent --no-audit --no-fund >&2)
  cp "$sse_clients/package-lock.json" "$sse_clients/node_modules/.installed-lock.json"
fi
cargo test --locked --all-targets "$@"
# The published contract, checked from outside against the worker that cargo test just built.
scripts/contract-check.sh target/debug/unified-worker 40
