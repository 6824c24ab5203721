#!/usr/bin/env bash
# The test command: installs the pinned CLIs and the npm packages the tests drive if they are missing, then runs every
# test.
set -euo pipefail
cd "$(dirname "$0")/.."
# One NAME=value line per CLI; every one of them is exported.
set -a
eval "$(scripts/install-clis.sh)"
set +a
# The Node packages the tests run, each folder as pinned by its package-lock.json: the stock SSE clients
# (tests/api/sse_clients.rs) and the reference ACP client SDK (tests/api/acp_server.rs); a folder is installed again
# only when its lock file has changed since the last install.
for packages in tests/sse-clients tests/acp-client; do
  if ! cmp -s "$packages/package-lock.json" "$packages/node_modules/.installed-lock.json"; then
    echo "installing the npm packages of $packages into $packages/node_modules" >&2
    (cd "$packages" && npm ci --silent --no-audit --no-fund >&2)
    cp "$packages/package-lock.json" "$packages/node_modules/.installed-lock.json"
  fi
done
# Every temporary folder of the run (workspaces, homes, fake CLIs, the contract check's) under one fresh root, so
# that what the run leaves behind can be found precisely.
temp_root=$(mktemp -d)
export TMPDIR="$temp_root"

# Nothing the run started may outlive it, whether it passed or not: a process still running from, or naming, a
# folder under the root is listed, killed, and fails the run.
nothing_left() {
  local status=$? leftovers=() proc cwd cmdline
  for proc in /proc/[0-9]*; do
    cwd=$(readlink "$proc/cwd" 2>/dev/null || true)
    cmdline=$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline" || true)
    case "$cwd/ $cmdline" in
      *"$temp_root"/*) leftovers+=("${proc#/proc/}") ;;
    esac
  done
  if [ "${#leftovers[@]}" -gt 0 ]; then
    echo "processes the tests left running (cwd or command line under $temp_root):" >&2
    ps -o pid,ppid,pgid,etime,args -p "$(IFS=,; echo "${leftovers[*]}")" >&2 || true
    kill -KILL "${leftovers[@]}" 2>/dev/null || true
    status=1
  fi
  rm -rf "$temp_root"
  exit "$status"
}
trap nothing_left EXIT

cargo test --locked --all-targets "$@"
# The gateway's tests once more with the fleet's state in a real redis-server (each test fleet starts its own and
# shares it between its gateways): the line, replay and dispatch must behave the same with either store.
TEST_GATEWAY_STORE=redis cargo test --locked --test api -- gateway:: dashboard:: exec:: front_door::
# The published contract, checked from outside against the worker that cargo test just built.
scripts/contract-check.sh target/debug/unified-worker 40
