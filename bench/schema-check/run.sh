#!/usr/bin/env bash
# ferry schema check vs QEMU 7.2's scripts/vmstate-static-checker.py on the QEMU 7.2 -dump-vmstate
# files (pc, q35, pseries each against itself, pc vs q35), timed in one run; prints the ratio.
# The checker comes from Debian's qemu source package, fetched here into the build dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
FERRY=$BUILD/ferry
CORPUS=../shared/corpus/qemu
[ -d "$CORPUS" ] || CORPUS=../../shared/corpus/qemu   # a worktree under wt/
WORK=$BUILD/bench-schema-check
CHECKER=$WORK/vmstate-static-checker.py
RUNS=${RUNS:-30}
PY=/usr/bin/python3

[ -x "$FERRY" ] || { echo "bench/schema-check: $FERRY not built" >&2; exit 1; }
[ -d "$CORPUS" ] || { echo "bench/schema-check: corpus $CORPUS missing" >&2; exit 1; }

have_deb_src() {
    grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/
}

fetch_checker() {
    if ! have_deb_src; then
        [ "$(id -u)" -eq 0 ] || { echo "bench/schema-check: need root to add a deb-src entry" >&2; exit 1; }
        # Same mirror as the existing deb entry (deb822 or one-line format).
        if [ -f /etc/apt/sources.list.d/debian.sources ]; then
            sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
                > /etc/apt/sources.list.d/ferry-deb-src.sources
        else
            grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
                > /etc/apt/sources.list.d/ferry-deb-src.list
        fi
        apt-get update -qq
    fi
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get source --download-only -qq qemu >/dev/null 2>&1)
    tar -xJf "$tmp"/qemu_*.orig.tar.xz -C "$tmp" --wildcards '*/scripts/vmstate-static-checker.py'
    mkdir -p "$WORK"
    cp "$tmp"/qemu-*/scripts/vmstate-static-checker.py "$CHECKER"
    rm -rf "$tmp"
}

[ -f "$CHECKER" ] || fetch_checker

"$PY" - "$FERRY" "$CHECKER" "$CORPUS" "$RUNS" <<'PYEOF'
import statistics, subprocess, sys, time
ferry, checker, corpus, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
d = lambda m: f"{corpus}/dump-{m}-7.2.json"
pairs = [("pc-i440fx", "pc-i440fx"), ("q35", "q35"), ("pseries", "pseries"), ("pc-i440fx", "q35")]

def timed(cmd):
    times, rc = [], None
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
        rc = p.returncode
    return statistics.median(times), min(times), rc

print(f"schema check, median of {runs} runs per pair (min in brackets)")
print(f"{'pair':24} {'checker.py':>16} {'ferry':>16} {'ratio':>7}  rc(checker/ferry)")
tot_c = tot_f = min_c = min_f = 0.0
for a, b in pairs:
    mc, nc, rc_c = timed(["/usr/bin/python3", checker, "-s", d(a), "-d", d(b)])
    mf, nf, rc_f = timed([ferry, "schema", "check", "-q", d(a), d(b)])
    tot_c += mc
    tot_f += mf
    min_c += nc
    min_f += nf
    print(f"{a + ' vs ' + b:24} {mc*1e3:8.2f} ({nc*1e3:5.2f}) {mf*1e3:8.2f} ({nf*1e3:5.2f}) "
          f"{mc/mf:6.1f}x  {rc_c}/{rc_f}")
    if (rc_c == 0) != (rc_f == 0):
        print(f"  MISMATCH: the checker and ferry disagree on {a} vs {b}")
print(f"{'total':24} {tot_c*1e3:8.2f} ({min_c*1e3:5.1f}) {tot_f*1e3:8.2f} ({min_f*1e3:5.2f}) "
      f"{tot_c/tot_f:6.1f}x")
print(f"ratio: ferry schema check is {tot_c/tot_f:.1f}x faster than vmstate-static-checker.py "
      f"(medians; {min_c/min_f:.1f}x on the minimums; target >= 20x)")
PYEOF
