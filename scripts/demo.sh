#!/usr/bin/env bash
# make demo: Ferry's main job in one minute. A source VM with the built-in firmware (1 GiB,
# 1 vCPU of max 4) gets a vCPU and a memory block hotplugged and runs the self-verifying
# dirtying workload; a destination is started and given the same devices with device_add (as
# libvirt does); the VM is live-migrated over loopback TCP with a progress bar while a hotplug
# is attempted (and refused) mid-migration; then a summary. Usage: scripts/demo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(cd "${1:-build}" && pwd)
FERRY="$BUILD/ferry"
[ -x "$FERRY" ] || { echo "demo: build first (make build)" >&2; exit 1; }
[ -w /dev/kvm ] || { echo "demo: /dev/kvm is not usable here" >&2; exit 1; }
DIR=$(mktemp -d /tmp/ferry-demo-XXXXXX)
SRC_PID= DST_PID=
cleanup() { for p in $SRC_PID $DST_PID; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

qmp() { # SOCKET JSON... -> one result line per command
    python3 - "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("r"); w = s.makefile("w")
f.readline(); w.write('{"execute":"qmp_capabilities"}\n'); w.flush(); f.readline()
for c in sys.argv[2:]:
    w.write(c + "\n"); w.flush()
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            break
    print(r["error"]["desc"] if "error" in r else json.dumps(r["return"]))
PY
}
wait_line() { # FILE TEXT
    for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "demo: timed out waiting for '$2' in $1" >&2; exit 1
}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
VM="--memory 1G --smp 1,maxcpus=4 --maxmem 1152M --workload dirty,report=2"

echo "== source: 1 GiB, 1 vCPU of max 4, built-in firmware, dirtying 100 MiB (self-verifying)"
"$FERRY" run $VM --qmp "unix:$DIR/src.qmp" --serial "$DIR/src.log" 2>"$DIR/src.err" &
SRC_PID=$!
wait_line "$DIR/src.log" READY
echo "== hotplug on the source: vCPU 1 and a 128 MiB memory block"
qmp "$DIR/src.qmp" '{"execute":"device_add","arguments":{"driver":"cpu","id":"cpu1","slot":1}}' \
    '{"execute":"device_add","arguments":{"driver":"mem-block","id":"mem0","slot":0}}' >/dev/null
wait_line "$DIR/src.log" "ONLINE cpu 1"
wait_line "$DIR/src.log" "ONLINE mem 0"
wait_line "$DIR/src.log" "VERIFY ok"
sed 's/^/   source guest: /' "$DIR/src.log"

echo "== destination: same configuration, --incoming tcp:127.0.0.1:$PORT, devices via device_add"
"$FERRY" run $VM --incoming "tcp:127.0.0.1:$PORT" --qmp "unix:$DIR/dst.qmp" \
    --serial "$DIR/dst.log" 2>"$DIR/dst.err" &
DST_PID=$!
for _ in $(seq 100); do [ -S "$DIR/dst.qmp" ] && break; sleep 0.05; done
qmp "$DIR/dst.qmp" '{"execute":"device_add","arguments":{"driver":"cpu","id":"cpu1","slot":1}}' \
    '{"execute":"device_add","arguments":{"driver":"mem-block","id":"mem0","slot":0}}' \
    '{"execute":"query-status"}' | tail -1 | sed 's/^/   destination: /'

echo "== live migration (bandwidth capped at 400 MiB/s so the bar is visible)"
"$FERRY" migrate --qmp "$DIR/src.qmp" --max-bandwidth 400M --timeline "$DIR/timeline.svg" \
    "tcp:127.0.0.1:$PORT" >"$DIR/migrate.out" &
MIG_PID=$!
for _ in $(seq 200); do
    st=$(qmp "$DIR/src.qmp" '{"execute":"query-migrate"}')
    case "$st" in *'"active"'*) break ;; esac
    sleep 0.01
done
REFUSED=$(qmp "$DIR/src.qmp" '{"execute":"device_add","arguments":{"driver":"cpu","id":"cpu2","slot":2}}')
wait $MIG_PID || { cat "$DIR/migrate.out"; echo "demo: migration failed" >&2; exit 1; }
echo "   hotplug attempt during the migration: $REFUSED"
cat "$DIR/migrate.out" | sed 's/^/   /'
sleep 2.5 # the destination guest carries on: two more verification passes
wait_line "$DIR/dst.log" "VERIFY ok"
SRC_STATE=$(qmp "$DIR/src.qmp" '{"execute":"query-status"}')
DST_STATE=$(qmp "$DIR/dst.qmp" '{"execute":"query-status"}')
echo
echo "== summary"
grep -o 'total [0-9]* ms, downtime [0-9.]* ms' "$DIR/migrate.out" | sed 's/^/   /'
grep -o '[0-9]* passes; .*' "$DIR/migrate.out" | sed 's/^/   /'
echo "   source:      $SRC_STATE"
echo "   destination: $DST_STATE"
echo "   guest's verifier on the destination: $(grep VERIFY "$DIR/dst.log" | tail -1)"
if grep -q "VERIFY FAIL" "$DIR/dst.log"; then echo "demo: VERIFY FAIL" >&2; exit 1; fi
echo "   hotplug during migration: ${REFUSED}"
echo "   timeline plot: $DIR/timeline.svg"
