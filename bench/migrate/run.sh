#!/usr/bin/env bash
# Live migration, Ferry vs QEMU 7.2, in one run on the same raw boot-sector guests (idle.img and
# dirty.img from ../shared/bench/guest), over loopback TCP, with the raw loopback throughput
# measured as the ceiling. Prints a table and the ratios against the targets.
# Usage: bench/migrate/run.sh [BUILD_DIR] [--quick] [--sizes 512,2048[,8192]] [--reps N]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=$(cd "${1:-build}" && pwd)
shift || true
[ -x "$BUILD/ferry" ] && [ -x "$BUILD/tests/kvm/ferry-mig-host" ] ||
    { echo "bench/migrate: build first ($BUILD/ferry, tests/kvm/ferry-mig-host)" >&2; exit 1; }
scripts/deps.sh qemu-system-x86 python3 >/dev/null || exit 1
[ -w /dev/kvm ] || { echo "bench/migrate: /dev/kvm not usable: SKIPPED" >&2; exit 77; }
GUEST=${FERRY_GUEST_DIR:-}
if [ -z "$GUEST" ]; then # ../shared/bench/guest beside the repository (or above a worktree)
    d=$(pwd)
    while [ "$d" != / ] && [ ! -d "$d/../shared/bench/guest" ]; do d=$(dirname "$d"); done
    GUEST="$d/../shared/bench/guest"
fi
exec python3 bench/migrate/bench.py --build "$BUILD" --guest "$GUEST" "$@"
