#!/usr/bin/env bash
# make bench: run every benchmark under bench/ (each prints its own ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
for b in bench/*/run.sh; do
    [ -x "$b" ] || continue
    echo "=== $(dirname "$b") ==="
    "$b" "$BUILD"
done
