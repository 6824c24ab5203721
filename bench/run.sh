#!/usr/bin/env bash
# Builds the worker and the benchmarks in release mode and prints the table (see BENCHMARKS.md).
# Usage: bench/run.sh [throughput|latency|big|startup|busy]   (BENCH_RUNS=N for more or fewer runs)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p unified-worker -p unified-worker-bench >&2
exec target/release/bench-core "$@"
