#!/usr/bin/env bash
# Two hosts in one machine: source and destination `ferry run` in two network namespaces joined
# by a veth pair (addresses exist only inside them). The link is cut mid-migration (the source
# keeps running and verifying, the destination exits without running), then restored and the
# migration succeeds. Root only (skipped with 77 otherwise). usage: test-netns.sh FERRY
set -euo pipefail
FERRY=$1
skip() { echo "*** SKIPPED kvm-netns: $1 ***" >&2; echo "SKIPPED: $1"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
command -v ip >/dev/null || skip "no 'ip' command (iproute2)"
[ -w /dev/kvm ] || skip "/dev/kvm is not usable"
A=ferry-a-$$ B=ferry-b-$$ DIR=$(mktemp -d /tmp/ferry-netns-XXXXXX)
PIDS=()
# Runs on every exit (success, failed check, set -e abort): the processes, the namespaces and
# the directory go; on failure the logs are shown first, since the directory does not survive.
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    if [ "$rc" -ne 0 ]; then
        for f in "$DIR"/*.log "$DIR"/*.err; do
            [ -f "$f" ] && { echo "--- $(basename "$f") (last lines)"; tail -5 "$f"; }
        done
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$A"
ip netns add "$B"
ip link add va netns "$A" type veth peer name vb netns "$B"
ip -n "$A" addr add 10.231.0.1/24 dev va
ip -n "$B" addr add 10.231.0.2/24 dev vb
ip -n "$A" link set va up
ip -n "$B" link set vb up
ip -n "$A" link set lo up
ip -n "$B" link set lo up

fail=0
check() { if eval "$1"; then echo "ok   $2"; else echo "FAIL $2"; fail=1; fi; }
qmp() {
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
    print(json.dumps(r))
PY
}
wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }
count_ok() { grep -c "VERIFY ok" "$1" 2>/dev/null || true; }
VM="--memory 256M --workload dirty,mb=32,report=1"

ip netns exec "$A" "$FERRY" run $VM --qmp "unix:$DIR/src.qmp" --serial "$DIR/src.log" 2>/dev/null &
PIDS+=($!)
ip netns exec "$B" "$FERRY" run $VM --incoming tcp:10.231.0.2:4444 --qmp "unix:$DIR/dst.qmp" \
    --serial "$DIR/dst.log" 2>"$DIR/dst.err" &
DST=$!
PIDS+=($DST)
wait_sock "$DIR/src.qmp" && wait_sock "$DIR/dst.qmp"
sleep 1
# Slow enough to cut mid-way, then cut the link by taking the source's end down.
qmp "$DIR/src.qmp" '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":4194304}}' \
    '{"execute":"migrate","arguments":{"uri":"tcp:10.231.0.2:4444"}}' >/dev/null
sleep 1
check '[[ $(qmp "$DIR/src.qmp" "{\"execute\":\"query-migrate\"}") == *\"active\"* ]]' \
    "migration across the veth pair is active"
ip -n "$A" link set va down
st=""
for _ in $(seq 300); do
    st=$(qmp "$DIR/src.qmp" '{"execute":"query-migrate"}')
    [[ $st == *'"failed"'* ]] && break
    sleep 0.1
done
check '[[ $st == *\"failed\"* ]]' "link cut: the source reports failed ($(echo "$st" | grep -o '"error-desc": "[^"]*"'))"
n=$(count_ok "$DIR/src.log"); sleep 2
check '[[ $(count_ok "$DIR/src.log") -gt $n ]] && ! grep -q "VERIFY FAIL" "$DIR/src.log"' \
    "link cut: the source keeps running and verifying"
check '[[ $(qmp "$DIR/src.qmp" "{\"execute\":\"query-status\"}") == *\"running\"* ]]' \
    "link cut: source status running"
for _ in $(seq 300); do kill -0 $DST 2>/dev/null || break; sleep 0.1; done
check '! kill -0 $DST 2>/dev/null && grep -q "did not start" "$DIR/dst.err"' \
    "link cut: the destination exits without running ($(tail -1 "$DIR/dst.err"))"

# Link back, new destination, full migration.
ip -n "$A" link set va up
rm -f "$DIR/dst.qmp"
ip netns exec "$B" "$FERRY" run $VM --incoming tcp:10.231.0.2:4445 --qmp "unix:$DIR/dst.qmp" \
    --serial "$DIR/dst2.log" 2>/dev/null &
PIDS+=($!)
wait_sock "$DIR/dst.qmp"
sleep 0.5
qmp "$DIR/src.qmp" '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":0}}' \
    '{"execute":"migrate","arguments":{"uri":"tcp:10.231.0.2:4445"}}' >/dev/null
for _ in $(seq 300); do
    st=$(qmp "$DIR/src.qmp" '{"execute":"query-migrate"}')
    [[ $st == *'"completed"'* || $st == *'"failed"'* ]] && break
    sleep 0.1
done
check '[[ $st == *\"completed\"* ]]' "after the link is back: migration completes"
sleep 2
check 'grep -q "VERIFY ok" "$DIR/dst2.log" && ! grep -q "VERIFY FAIL" "$DIR/dst2.log"' \
    "the destination namespace runs the guest and it verifies"
exit $fail
