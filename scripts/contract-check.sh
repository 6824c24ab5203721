#!/usr/bin/env bash
# Checks the running worker against its own published contract with schemathesis (pinned, in a virtualenv in the
# cache): every operation, every check but one (see README, "The contract"), a bounded number of examples; then the
# worker must still be alive with its job slot free. Usage: scripts/contract-check.sh [BINARY] [EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/debug/unified-worker}"
EXAMPLES="${2:-40}"
CACHE="${UNIFIED_WORKER_CACHE:-$HOME/.cache/unified-worker}"
VENV="$CACHE/schemathesis-4.32.5"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q schemathesis==4.32.5 >&2
fi

work=$(mktemp -d)
fake="$PWD/tests/contract/fake-cli"
pid=""
# Waits for the worker to be gone, so that nothing of the check outlives it.
stop_worker() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
trap 'stop_worker; rm -rf "$work"' EXIT

# Starts the worker with PATH=$1 and its log in $2; sets pid and base.
start_worker() {
  env -i PATH="$1" HOME="$work" HOST=127.0.0.1 PORT=0 LOG_FORMAT=json EXIT_AFTER_JOB=false \
    WORKSPACE_DIR="$work/ws" HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 \
    NO_PROXY=127.0.0.1,localhost "$BIN" >"$2" 2>&1 &
  pid=$!
  local port=""
  for _ in $(seq 200); do
    port=$(grep -o '"port":[0-9]*' "$2" | head -1 | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "the worker did not start:" >&2; cat "$2" >&2; exit 1; }
  base="http://127.0.0.1:$port"
}

# Every provider's program is the fake CLI. Their names come from the worker itself: with nothing on PATH, /health
# says of each provider "<program> not found", so a new provider needs no line here.
mkdir -p "$work/nothing" "$work/clis"
start_worker "$work/nothing" "$work/discovery-log"
programs=$(python3 - "$base/health" <<'PY'
import json, sys, urllib.request
providers = json.load(urllib.request.urlopen(sys.argv[1]))["providers"]
for name, status in providers.items():
    reason = status.get("reason") or ""
    program = reason.removesuffix(" not found")
    if status.get("available") or program == reason or "/" in program:
        sys.exit(f"cannot tell the program of {name} from /health: {status}")
    print(program)
PY
)
stop_worker
[ -n "$programs" ] || { echo "/health lists no provider" >&2; exit 1; }
for program in $programs; do
  ln -s "$fake" "$work/clis/$program"
done
echo "fake CLIs: $(echo $programs)"

port_file="$work/log"
start_worker "$work/clis:$PATH" "$port_file"

# positive_data_acceptance is left out: a request the schema allows can still be refused for reasons no schema
# can hold (the credential shape a provider takes, the repository hosts the worker allows, a prompt of spaces).
set +e
# Run from the scratch folder: schemathesis keeps its caches in the working directory.
(cd "$work" && "$VENV/bin/schemathesis" run "$base/openapi.json" --checks all \
  --exclude-checks positive_data_acceptance --max-examples "$EXAMPLES" --seed 20261125 --no-color >"$work/report" 2>&1)
status=$?
set -e
cat "$work/report"
cases=$(grep -Eo '[0-9]+ generated' "$work/report" | head -1 | cut -d' ' -f1)
echo "schemathesis: ${cases:-0} cases against $base"
[ "$status" -eq 0 ] || { echo "schemathesis found failures" >&2; exit 1; }

kill -0 "$pid" || { echo "the worker died during the run" >&2; exit 1; }
for _ in $(seq 200); do
  state=$(python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))["status"])' "$base/status")
  [ "$state" = idle ] && break
  sleep 0.05
done
[ "$state" = idle ] || { echo "the job slot is not free after the run: $state" >&2; exit 1; }
echo "contract check: 0 failures, worker alive and idle"
