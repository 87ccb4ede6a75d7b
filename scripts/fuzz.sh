#!/usr/bin/env bash
# scripts/fuzz.sh build DIR  : build the libFuzzer harnesses with clang into DIR
# scripts/fuzz.sh run DIR    : build, then run each harness FUZZ_SECONDS (default 60) on its corpus
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1 dir=$2
if [ ! -f "$dir/build.ninja" ]; then
    CC=clang meson setup "$dir" -Dfuzz=true -Dtests=false -Db_lundef=false \
        -Db_sanitize=address,undefined >/dev/null
fi
: > "$dir/fuzz-summary.txt" # never a stale summary from an earlier run
ninja -C "$dir" >"$dir.ninja.log" 2>&1 || { tail -40 "$dir.ninja.log"; exit 1; }
[ "$mode" = run ] || exit 0
secs=${FUZZ_SECONDS:-60}
mkdir -p .fuzz-artifacts
harnesses=($(find "$dir/tests/fuzz" -maxdepth 1 -type f -name "fuzz-*" -perm -u+x | sort))
[ -x "${harnesses[0]}" ] || { echo "fuzz: no harness was built in $dir" >&2; exit 1; }
for h in "${harnesses[@]}"; do
    [ -f "$h" ] && [ -x "$h" ] || continue
    name=$(basename "$h")
    seeds="tests/fuzz/corpus/${name#fuzz-}"
    work=$(mktemp -d)
    echo "fuzz: $name for ${secs}s (seeds: $seeds)"
    dirs=("$work")
    [ -d "$seeds" ] && dirs+=("$seeds")
    if "$h" -max_total_time="$secs" -artifact_prefix=.fuzz-artifacts/ -print_final_stats=1 \
        -rss_limit_mb=2048 "${dirs[@]}" >"$dir/$name.log" 2>&1; then
        echo "$name ok $(grep -o 'stat::number_of_executed_units: [0-9]*' "$dir/$name.log" | tail -1)" \
            >> "$dir/fuzz-summary.txt"
    else
        echo "$name FAILED (see $dir/$name.log, artifacts in .fuzz-artifacts/)" >> "$dir/fuzz-summary.txt"
        tail -30 "$dir/$name.log"
    fi
    rm -rf "$work"
done
cat "$dir/fuzz-summary.txt"
