#!/usr/bin/env bash
# The test command: installs the pinned CLIs if they are missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# One NAME=value line per CLI; every one of them is exported.
set -a
eval "$(scripts/install-clis.sh)"
set +a
cargo test --locked --all-targets "$@"
# The published contract, checked from outside against the worker that cargo test just built.
scripts/contract-check.sh target/debug/unified-worker 40
