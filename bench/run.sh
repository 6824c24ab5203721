#!/usr/bin/env bash
# Builds the worker and the benchmarks in release mode and prints the table (see BENCHMARKS.md).
# Usage: bench/run.sh [throughput|latency|big|startup|busy|gateway|gateway-fleet|gateway-latency|gateway-startup]
#        (BENCH_RUNS=N for more or fewer runs; BENCH_GATEWAY_POLL_MS sets the gateway's GATEWAY_POLL_MS;
#        BENCH_REPLACEMENT_DELAY_MS delays each replica's restart, as an orchestrator would)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p unified-worker -p unified-worker-bench >&2
exec target/release/bench-core "$@"
