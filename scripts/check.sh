#!/usr/bin/env bash
# make check: normal build + all suites, ASan+UBSan build + unit/scenario suites, short fuzz.
# Always ends with the line "N passed, N failed[, N skipped]" (scripts/test-summary.py); a step
# that cannot build counts as a failure there, and its tests are not run.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BUILD_ASAN=${BUILD_ASAN:-build-asan}
rc=0
failed_steps=()
logs=()
# Old results must not be counted for a build that fails this time.
rm -f "$BUILD/meson-logs/testlog.json" "$BUILD_ASAN/meson-logs/testlog.json"
if { [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null; } && ninja -C "$BUILD"; then
    meson test -C "$BUILD" --print-errorlogs --num-processes 2 || rc=1
    logs+=("$BUILD")
else
    failed_steps+=(--failed-step "build ($BUILD)")
fi
if { [ -f "$BUILD_ASAN/build.ninja" ] || meson setup "$BUILD_ASAN" -Db_sanitize=address,undefined \
        -Db_lundef=false -Dbuildtype=debug >/dev/null; } && ninja -C "$BUILD_ASAN"; then
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
        meson test -C "$BUILD_ASAN" --suite unit --suite scenario --suite cases \
        --print-errorlogs --num-processes 2 || rc=1
    logs+=("$BUILD_ASAN")
else
    failed_steps+=(--failed-step "ASan+UBSan build ($BUILD_ASAN)")
fi
fuzz_log=""
if command -v clang >/dev/null; then
    if FUZZ_SECONDS=${FUZZ_SECONDS:-20} scripts/fuzz.sh run build-fuzz; then
        fuzz_log=build-fuzz/fuzz-summary.txt
    else
        failed_steps+=(--failed-step "fuzz harness build (build-fuzz)")
    fi
else
    echo "check: clang not found: SKIPPING the fuzz run" >&2
fi
python3 scripts/test-summary.py "${logs[@]}" ${fuzz_log:+--fuzz "$fuzz_log"} \
    "${failed_steps[@]}" || rc=1
exit $rc
