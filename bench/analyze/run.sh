#!/usr/bin/env bash
# ferry analyze vs QEMU 7.2's scripts/analyze-migration.py on the same QEMU streams, in one run:
# wall time and peak RSS, printed as ratios (targets: >= 50x faster, <= 1/5 the memory).
# The script is fetched at benchmark time from Debian's qemu source package (never committed)
# and cached under the build dir. Usage: bench/analyze/run.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=$(cd "${1:-build}" && pwd)
FERRY="$BUILD/ferry"
CORPUS=${FERRY_CORPUS:-}
if [ -z "$CORPUS" ]; then # ../shared/corpus beside the repository (or above a git worktree)
    d=$(pwd)
    while [ "$d" != / ] && [ ! -d "$d/../shared/corpus" ]; do d=$(dirname "$d"); done
    CORPUS="$d/../shared/corpus"
fi
[ -x "$FERRY" ] || { echo "bench/analyze: build first ($FERRY missing)" >&2; exit 1; }
[ -d "$CORPUS/qemu" ] || { echo "bench/analyze: corpus not found (set FERRY_CORPUS)" >&2; exit 1; }
scripts/deps.sh time python3 >/dev/null || exit 1 # /usr/bin/time for peak RSS

CACHE="$BUILD/bench-analyze"
SCRIPT="$CACHE/analyze-migration.py"
fetch_script() {
    mkdir -p "$CACHE"
    # deb-src for the same mirror as the existing deb entries (deb822 or one-line format).
    if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        [ "$(id -u)" -eq 0 ] || { echo "bench/analyze: need root to add deb-src" >&2; exit 1; }
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            sed -n 's/^Types: *deb$/Types: deb-src/;p' "$f" \
                > "/etc/apt/sources.list.d/ferry-src-$(basename "$f")"
        done
        if [ -f /etc/apt/sources.list ]; then
            sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list \
                > /etc/apt/sources.list.d/ferry-deb-src.list
        fi
        apt-get update -qq
    fi
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get source --download-only qemu >/dev/null 2>&1)
    local orig deb
    orig=$(ls "$tmp"/qemu_*.orig.tar.* | head -1)
    deb=$(ls "$tmp"/qemu_*.debian.tar.* | head -1)
    tar -xf "$orig" -C "$tmp" --wildcards '*/scripts/analyze-migration.py'
    cp "$tmp"/*/scripts/analyze-migration.py "$SCRIPT"
    # Debian carries the 7.2.x stable updates as patches; 7.2.7 made the script's 16/32/64-bit
    # reads unsigned (without it pseries streams fail). Apply the hunks for this file only.
    tar -xf "$deb" -C "$tmp" debian/patches
    python3 - "$tmp/debian/patches" "$tmp/script.diff" <<'PY'
import os, re, sys
out = []
for root, _, files in os.walk(sys.argv[1]):
    for f in sorted(files):
        t = open(os.path.join(root, f), errors="replace").read()
        for part in re.split(r"(?m)^(?=diff --git )", t):
            if part.startswith("diff --git a/scripts/analyze-migration.py"):
                out.append(part)
open(sys.argv[2], "w").write("".join(out))
PY
    if [ -s "$tmp/script.diff" ]; then
        patch -s "$SCRIPT" < "$tmp/script.diff"
    fi
    awk '/^Version:/ {print $2; exit}' "$tmp"/qemu_*.dsc > "$CACHE/version"
    rm -rf "$tmp"
}
[ -f "$SCRIPT" ] || fetch_script

# One python3 process times both tools per stream: os.wait4 gives wall and user+sys CPU with
# microsecond resolution (/usr/bin/time's %e/%U are 10 ms granular, too coarse for ferry); the
# peak RSS comes from one extra run under /usr/bin/time -f %M.
echo "ferry analyze vs QEMU analyze-migration.py (Debian qemu $(cat "$CACHE/version" 2>/dev/null))"
python3 - "$FERRY" "$SCRIPT" "$CORPUS"/qemu/*.bin <<'PY'
import filecmp, os, sys, tempfile, time

ferry, script, streams = sys.argv[1], sys.argv[2], sys.argv[3:]
tmp = tempfile.mkdtemp()


def spawn(argv, out):
    """Run argv with stdout/stderr to files; return (wall s, user+sys s, exit code)."""
    with open(out, "wb") as o, open(out + ".err", "wb") as e:
        acts = [(os.POSIX_SPAWN_DUP2, o.fileno(), 1), (os.POSIX_SPAWN_DUP2, e.fileno(), 2)]
        t0 = time.perf_counter()
        # posix_spawn (vfork): the child does not copy python's page tables, whose cost would
        # otherwise be charged to the measured program.
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=acts)
        _, status, ru = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
    return wall, ru.ru_utime + ru.ru_stime, os.waitstatus_to_exitcode(status)


def measure(cmd, n, out):
    """Best wall and CPU of n direct runs; peak RSS from one more run under /usr/bin/time."""
    runs = [spawn(cmd, out) for _ in range(n)]
    best_wall = min(r[0] for r in runs)
    best_cpu = min(r[1] for r in runs)
    spawn(["/usr/bin/time", "-f", "%M", "-o", out + ".rss"] + cmd, out + ".rssrun")
    rss = int(open(out + ".rss").read().split()[-1])
    return best_wall * 1e3, best_cpu * 1e3, rss, runs[-1][2]


print("%-22s %10s %9s %8s | %10s %9s %8s | %10s %9s %6s  %s" % (
    "stream", "script ms", "ferry ms", "wall", "script cpu", "ferry cpu", "cpu", "script KiB",
    "ferry KiB", "memory", "output"))
for f in streams:
    so, fo = os.path.join(tmp, "script.json"), os.path.join(tmp, "ferry.json")
    sw, sc, sr, src = measure(["python3", script, "-f", f], 3, so)
    fw, fc, fr, frc = measure([ferry, "analyze", f], 20, fo)
    if src != 0:
        last = [l for l in open(so + ".err", errors="replace").read().splitlines()
                if l.strip() and not l.startswith("Command exited")][-1:]
        out = "script failed: " + (last[0][:60] if last else "exit %d" % src)
    elif filecmp.cmp(so, fo, shallow=False):
        out = "identical JSON"
    else:
        out = "JSON differs"
    if frc != 0:
        out += "; ferry exit %d" % frc
    ok = src == 0
    print("%-22s %10.1f %9.2f %8s | %10.1f %9.2f %8s | %10d %9d %6s  %s" % (
        os.path.basename(f), sw, fw, "%.0fx" % (sw / fw) if ok else "n/a", sc, fc,
        "%.0fx" % (sc / fc) if ok else "n/a", sr, fr, "1/%.0f" % (sr / fr) if ok else "n/a", out))
print("ms = best wall / CPU (user+sys) time of 3 script runs and 20 ferry runs; KiB = peak RSS")
print("targets: >= 50x faster, <= 1/5 the memory; load average now: %.2f" % os.getloadavg()[0])
PY
