#!/usr/bin/env bash
# The test command: installs the pinned CLIs if they are missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "export $(scripts/install-clis.sh)"
cargo test --locked --all-targets "$@"
