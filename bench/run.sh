#!/usr/bin/env bash
# Builds the worker and the benchmarks in release mode and prints the table (see BENCHMARKS.md).
# Usage: bench/run.sh [throughput|latency|big|startup|busy|acp|gateway|gateway-fleet|gateway-latency|gateway-startup|
#        gateway-store|abuse|worktree|broker]
#        (BENCH_RUNS=N for more or fewer runs; BENCH_GATEWAY_POLL_MS sets the gateway's GATEWAY_POLL_MS;
#        BENCH_REPLACEMENT_DELAY_MS delays each replica's restart, as an orchestrator would)
#        bench/run.sh compare <rev>   the worker of git revision <rev> and the working tree's, side by side in one
#                                     run: throughput, CPU per event, added latency (rounds alternate the order)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = compare ]; then
  rev=$(git rev-parse --short "${2:?usage: bench/run.sh compare <rev>}")
  base=target/release/unified-worker-$rev
  if [ ! -x "$base" ]; then
    # The revision's sources, built with the same target directory (its dependencies are mostly shared).
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    git archive "$rev" | tar -x -C "$src"
    (cd "$src" && cargo build --release --locked -p unified-worker --target-dir "$OLDPWD/target" >&2)
    cp target/release/unified-worker "$base"
  fi
  # Built after the revision, so that target/release/unified-worker is the working tree's again.
  cargo build --release --locked -p unified-worker -p unified-worker-bench >&2
  exec target/release/bench-core compare "$rev=$base" "working tree=target/release/unified-worker"
fi
cargo build --release --locked -p unified-worker -p unified-worker-bench >&2
exec target/release/bench-core "$@"
