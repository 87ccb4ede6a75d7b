#!/usr/bin/env bash
# make check: normal build + all suites, ASan+UBSan build + unit/scenario suites, short fuzz.
# Ends with the line "N passed, N failed[, N skipped]" (scripts/test-summary.py).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BUILD_ASAN=${BUILD_ASAN:-build-asan}
rc=0
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null || exit 1
ninja -C "$BUILD" || exit 1
meson test -C "$BUILD" --print-errorlogs --num-processes 2 || rc=1
[ -f "$BUILD_ASAN/build.ninja" ] || meson setup "$BUILD_ASAN" -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debug >/dev/null || exit 1
ninja -C "$BUILD_ASAN" || exit 1
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    meson test -C "$BUILD_ASAN" --suite unit --suite scenario --suite cases --print-errorlogs \
    --num-processes 2 || rc=1
fuzz_log=""
if command -v clang >/dev/null; then
    FUZZ_SECONDS=${FUZZ_SECONDS:-20} scripts/fuzz.sh run build-fuzz || rc=1
    fuzz_log=build-fuzz/fuzz-summary.txt
else
    echo "check: clang not found: SKIPPING the fuzz run" >&2
fi
python3 scripts/test-summary.py "$BUILD" "$BUILD_ASAN" ${fuzz_log:+--fuzz "$fuzz_log"} || rc=1
exit $rc
