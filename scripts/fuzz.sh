#!/usr/bin/env bash
# scripts/fuzz.sh build DIR  : build the libFuzzer harnesses with clang into DIR
# scripts/fuzz.sh run DIR    : build, then run each harness FUZZ_SECONDS (default 60) on its corpus
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1 dir=$2
if [ ! -f "$dir/build.ninja" ]; then
    CC=clang meson setup "$dir" -Dfuzz=true -Dtests=false -Db_lundef=false >/dev/null
fi
ninja -C "$dir" >/dev/null
[ "$mode" = run ] || exit 0
secs=${FUZZ_SECONDS:-60}
: > "$dir/fuzz-summary.txt"
mkdir -p .fuzz-artifacts
for h in "$dir"/tests/fuzz/fuzz-*; do
    [ -x "$h" ] || continue
    name=$(basename "$h")
    seeds="tests/fuzz/corpus/${name#fuzz-}"
    work=$(mktemp -d)
    echo "fuzz: $name for ${secs}s (seeds: $seeds)"
    if "$h" -max_total_time="$secs" -artifact_prefix=.fuzz-artifacts/ -print_final_stats=0 \
        "$work" "$seeds" >"$dir/$name.log" 2>&1; then
        echo "$name ok $(grep -o 'stat::number_of_executed_units: [0-9]*' "$dir/$name.log" | tail -1)" \
            >> "$dir/fuzz-summary.txt"
    else
        echo "$name FAILED (see $dir/$name.log, artifacts in .fuzz-artifacts/)" >> "$dir/fuzz-summary.txt"
        tail -30 "$dir/$name.log"
    fi
    rm -rf "$work"
done
cat "$dir/fuzz-summary.txt"
