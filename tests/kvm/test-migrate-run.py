#!/usr/bin/env python3
"""Live migration between real `ferry run` processes over loopback TCP, with the built-in
firmware's self-verifying dirty workload (a lost or stale page prints VERIFY FAIL):
S2/S3 (devices hotplugged on the source, coldplugged on the destination in inmigrate; no
duplicate event), S10 (device_add/device_del refused mid-migration, migration unaffected),
S16 (destination lacks a device: refused at the handshake), S9 (reset then migrate), S13 (ferry-1.0
both sides, no hotplug in flight), S4/S7 (hotplug before the guest is
ready, migrated before it handled it: configured once, after switchover), destination killed,
cancel, snapshot + --restore, `ferry migrate` with its timeline, and failures in later phases
(destination killed or link cut in a later dirty pass, destination killed after the final pass
and in the middle of the device state; a proxy in front of the destination fires there).
usage: test-migrate-run.py FERRY"""
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import ferrykvm  # noqa: E402
from ferrykvm import (FINAL_PASS, REC_DEVICE, REC_RAM_PASS, Qmp,  # noqa: E402,F401
                      StreamProxy, Vm, check, dev, free_port, mem_sweeps, migrate,
                      verify_progress, wait_event)

ferrykvm.init(sys.argv[1], "kvm-migrate-run", "ferry-mig-run-")
ferry, tmp, failures = ferrykvm.ferry, ferrykvm.tmp, ferrykvm.failures

# ---- S2, S3, S10: hotplugged devices, destination built with device_add, mid-migration refusal
src = Vm([])
check(src.wait_line("VERIFY ok"), "source boots and verifies")
# Ferry's non-convergence parameters (docs/migration.md): defaults, set/query, bad values.
mp = src.q.ok("query-migrate-parameters")
check(mp.get("x-ferry-converge") == "switchover" and mp.get("x-ferry-max-passes") == 30,
      f"non-convergence defaults: switchover after 30 passes ({mp})")
src.q.ok("migrate-set-parameters", **{"x-ferry-converge": "throttle", "x-ferry-max-passes": 7})
mp = src.q.ok("query-migrate-parameters")
check(mp.get("x-ferry-converge") == "throttle" and mp.get("x-ferry-max-passes") == 7,
      f"x-ferry-converge/x-ferry-max-passes set ({mp})")
for args, want in (({"x-ferry-converge": "later"},
                    "Parameter 'x-ferry-converge' does not accept value 'later'"),
                   ({"x-ferry-max-passes": 1},
                    "Parameter 'x-ferry-max-passes' expects a value between 2 and 255"),
                   ({"x-ferry-max-passes": 256},
                    "Parameter 'x-ferry-max-passes' expects a value between 2 and 255"),
                   ({"x-ferry-max-passes": 5, "x-ferry-convergence": "throttle"},
                    "Parameter 'x-ferry-convergence' is unexpected")):
    r = src.q.cmd("migrate-set-parameters", **args)
    check(r.get("error", {}).get("desc") == want, f"migrate-set-parameters {args}: {r}")
mp = src.q.ok("query-migrate-parameters")
check(mp.get("x-ferry-converge") == "throttle" and mp.get("x-ferry-max-passes") == 7,
      f"a refused migrate-set-parameters changes nothing ({mp})")
src.q.ok("migrate-set-parameters", **{"x-ferry-converge": "switchover", "x-ferry-max-passes": 30})
check("error" not in dev(src.q, "cpu", "cpu1", 1), "hotplug cpu1 on the source")
check("error" not in dev(src.q, "mem-block", "mem0", 0), "hotplug mem0 on the source")
check(src.wait_line("ONLINE cpu 1") and src.wait_line("ONLINE mem 0"),
      "the source guest brings cpu1 and mem0 online")
port = free_port()
dst = Vm([], incoming=f"tcp:127.0.0.1:{port}")
check(dst.status() == "inmigrate", "destination waits in inmigrate")
check("error" not in dev(dst.q, "cpu", "cpu1", 1), "coldplug cpu1 on the destination (S2)")
check("error" not in dev(dst.q, "mem-block", "mem0", 0), "coldplug mem0 on the destination")
src.q.ok("migrate-set-parameters", **{"max-bandwidth": 24 << 20})
src.q.ok("migrate", uri=f"tcp:127.0.0.1:{port}")
time.sleep(0.15)
st = src.q.ok("query-migrate")
check(st.get("status") in ("setup", "active"), f"migration active ({st.get('status')})")
r = dev(src.q, "cpu", "cpu2", 2)
check("error" in r and "blocked while migration is active" in r["error"]["desc"],
      "S10: device_add refused mid-migration")
r = src.q.cmd("device_del", id="cpu1")
check("error" in r and "blocked while migration is active" in r["error"]["desc"],
      "S10: device_del refused mid-migration")
src.q.ok("migrate-set-parameters", **{"max-bandwidth": 0})
end = time.time() + 30
while time.time() < end and st.get("status") not in ("completed", "failed", "cancelled"):
    st = src.q.ok("query-migrate")
    time.sleep(0.02)
check(st.get("status") == "completed", f"S10: migration completes ({st.get('error-desc')})")
ram = st.get("ram", {})
check(ram.get("mbps", 0) > 0 and ram.get("pages-per-second", 0) > 0,
      f"completed: mbps {ram.get('mbps')} and pages-per-second {ram.get('pages-per-second')} "
      "are the migration's averages")
check(src.status() == "postmigrate", "source in postmigrate")
time.sleep(0.3)
check(dst.status() == "running", "destination running")
verify_progress(dst, "S3: destination")
dout = dst.out()
check("PLUGGED" not in dout and "DUPLICATE" not in dout and "STALE" not in dout,
      "S3: the destination guest sees cpu1/mem0 configured, no event presented again")
check(src.q.ok("query-hotpluggable-cpus") == dst.q.ok("query-hotpluggable-cpus"),
      "S3: query-hotpluggable-cpus equal on source and destination")
# mem0 arrived: the destination guest's verifier re-reads the whole block (one sweep = 8
# passes). Sweep numbers live in guest RAM, so they continue the source's; sweep last + 2 ran
# entirely on the destination.
s_sweeps = mem_sweeps(src.out(), 0)
want = (s_sweeps[-1] if s_sweeps else 0) + 2
end = time.time() + 20
while time.time() < end and want not in mem_sweeps(dst.out(), 0) and "VERIFY FAIL" not in dst.out():
    time.sleep(0.05)
d_sweeps = mem_sweeps(dst.out(), 0)
check(want in d_sweeps and d_sweeps[0] == want - 1 and "VERIFY FAIL" not in dst.out(),
      f"S3: the destination guest verifies every page of mem0 after migration (source sweeps "
      f"{s_sweeps[-3:]}, destination {d_sweeps[:3]})")
r = dst.q.cmd("device_del", id="mem0")
check("error" not in r, f"S3: device_del mem0 on the destination ({r.get('error')})")
check(dst.wait_line("UNPLUGGED mem 0") and wait_event(dst.q, "DEVICE_DELETED", device="mem0"),
      "S3: the destination guest releases mem0 (its pattern checked once more), DEVICE_DELETED")
n_after = len(dst.out())
verify_progress(dst, "S3: destination after unplugging mem0")
check("ERROR" not in dst.out() and "mem 0" not in dst.out()[n_after:],
      "S3: mem0 released cleanly: no pattern error, no sweep of it afterwards")
# The MIGRATION event may follow query-migrate's status by a moment.
wait_event(src.q, "MIGRATION", status="completed", timeout=5)
ev = [e["data"]["status"] for e in src.q.events if e["event"] == "MIGRATION"]
check("completed" in ev and "active" in ev, f"MIGRATION events on the source: {ev}")
check(any(e["event"] == "MIGRATION_PASS" for e in src.q.events), "MIGRATION_PASS events")
src.stop()
dst.stop()

# ---- S16: destination lacks a device
src = Vm([])
check(src.wait_line("READY"), "source ready")
dev(src.q, "cpu", "cpu1", 1)
check(src.wait_line("ONLINE cpu 1"), "cpu1 online")
port = free_port()
dst = Vm(["--machine", "ferry-1.0"], incoming=f"tcp:127.0.0.1:{port}")
st = migrate(src, f"tcp:127.0.0.1:{port}")
err = st.get("error-desc", "")
check(st.get("status") == "failed" and "refused" in err and "cpu1" in err
      and "machine" in err, f"S16: refused at the handshake listing all mismatches: {err}")
check(src.status() == "running", "S16: the source keeps running")
verify_progress(src, "S16: source")
try:
    rc = dst.p.wait(timeout=10)
except subprocess.TimeoutExpired:
    rc = None
derr = dst.stop()
check(rc == 1 and "did not start" in derr, f"S16: destination exits 1 with a message: {derr!r}")
src.stop()

# ---- S4/S7: hotplug before the guest is ready, migrate before it handled the event
src = Vm([], workload="dirty,mb=16,report=1,ready-delay=1500")
check(src.wait_line("BOOT"), "source booting (ready in 1.5 s)")
dev(src.q, "cpu", "cpu1", 1)
port = free_port()
dst = Vm([], incoming=f"tcp:127.0.0.1:{port}", workload="dirty,mb=16,report=1,ready-delay=1500")
dev(dst.q, "cpu", "cpu1", 1)
st = migrate(src, f"tcp:127.0.0.1:{port}")
check(st.get("status") == "completed", f"S4: migrated before READY ({st.get('error-desc')})")
check("READY" not in src.out(), "S4: the source guest was not ready yet")
check(dst.wait_line("ONLINE cpu 1", timeout=20), "S4: the destination guest configures cpu1")
time.sleep(0.5)
both = src.out() + dst.out()
check(both.count("PLUGGED cpu 1") == 1 and "DUPLICATE" not in both,
      "S4/S7: the hotplug is handled exactly once, after switchover")
src.stop()
dst.stop()

# ---- S9: hotplug, reset (reboot), then migrate: the destination carries the same state
src = Vm([])
check(src.wait_line("READY"), "S9: source ready")
dev(src.q, "cpu", "cpu1", 1)
check(src.wait_line("ONLINE cpu 1"), "S9: cpu1 online")
src.q.ok("system_reset")
end = time.time() + 20
while time.time() < end and src.out().count("READY") < 2:
    time.sleep(0.05)
check(src.out().count("READY") == 2 and src.wait_line("VERIFY ok", after=src.out().rfind("READY")),
      "S9: the guest rebooted and verifies again")
port = free_port()
dst = Vm([], incoming=f"tcp:127.0.0.1:{port}")
dev(dst.q, "cpu", "cpu1", 1)
st = migrate(src, f"tcp:127.0.0.1:{port}")
check(st.get("status") == "completed", f"S9: migration after reset completes ({st.get('error-desc')})")
verify_progress(dst, "S9: destination")
dout = dst.out()
check("PLUGGED" not in dout and "DUPLICATE" not in dout and "STALE" not in dout,
      "S9: no hotplug event re-presented after the reset and the migration")
src_cpus = src.q.ok("query-hotpluggable-cpus")
dst_cpus = dst.q.ok("query-hotpluggable-cpus")
check(src_cpus == dst_cpus, "S9: query-hotpluggable-cpus equal on both sides")
src.stop()
dst.stop()

# ---- S13 (first half): ferry-1.0 on both sides, hotplug completed (none in flight)
src = Vm(["--machine", "ferry-1.0"])
check(src.wait_line("READY"), "S13: ferry-1.0 source ready")
dev(src.q, "cpu", "cpu1", 1)
check(src.wait_line("ONLINE cpu 1"), "S13: cpu1 online")
port = free_port()
dst = Vm(["--machine", "ferry-1.0"], incoming=f"tcp:127.0.0.1:{port}")
dev(dst.q, "cpu", "cpu1", 1)
st = migrate(src, f"tcp:127.0.0.1:{port}")
check(st.get("status") == "completed", f"S13: ferry-1.0 migration completes ({st.get('error-desc')})")
verify_progress(dst, "S13: destination")
check("PLUGGED" not in dst.out(), "S13: no event re-presented")
src.stop()
dst.stop()

# ---- destination killed mid-migration; then cancel
src = Vm([])
check(src.wait_line("VERIFY ok"), "source verifies")
port = free_port()
dst = Vm([], incoming=f"tcp:127.0.0.1:{port}")
src.q.ok("migrate-set-parameters", **{"max-bandwidth": 8 << 20})
src.q.ok("migrate", uri=f"tcp:127.0.0.1:{port}")
time.sleep(0.4)
dst.p.send_signal(signal.SIGKILL)
end = time.time() + 40
st = {}
while time.time() < end:
    st = src.q.ok("query-migrate")
    if st.get("status") in ("completed", "failed", "cancelled"):
        break
    time.sleep(0.05)
check(st.get("status") == "failed", f"destination killed: source reports failed "
      f"({st.get('error-desc')})")
check(src.status() == "running", "destination killed: the source keeps running")
verify_progress(src, "destination killed: source")
dst.stop()

port = free_port()
dst = Vm([], incoming=f"tcp:127.0.0.1:{port}")
src.q.ok("migrate", uri=f"tcp:127.0.0.1:{port}")
time.sleep(0.3)
src.q.ok("migrate_cancel")
end = time.time() + 20
while time.time() < end and src.q.ok("query-migrate").get("status") != "cancelled":
    time.sleep(0.05)
check(src.q.ok("query-migrate").get("status") == "cancelled", "cancel: status cancelled")
check(src.status() == "running", "cancel: the source keeps running")
verify_progress(src, "cancel: source")
try:
    rc = dst.p.wait(timeout=10)
except subprocess.TimeoutExpired:
    rc = None
check(rc == 1, "cancel: the destination exits 1 and never ran")
dst.stop()
src.q.ok("migrate-set-parameters", **{"max-bandwidth": 0})

# ---- snapshot and --restore; ferry migrate with a timeline
snap = os.path.join(tmp, "vm.snap")
st = migrate(src, "file:" + snap)
check(st.get("status") == "completed" and src.status() == "postmigrate",
      "snapshot written, source in postmigrate")
src.stop()
rest = Vm(["--restore", snap])
time.sleep(0.5)
check(rest.status() == "running", "--restore: the VM runs")
verify_progress(rest, "--restore")
port = free_port()
dst = Vm([], incoming=f"tcp:127.0.0.1:{port}")
svg = os.path.join(tmp, "t.svg")
p = subprocess.run([ferry, "migrate", "--qmp", rest.qmp_path, "--timeline", svg,
                    "--converge", "throttle", "--max-passes", "12",
                    f"tcp:127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
check(p.returncode == 0 and "migration completed" in p.stdout and "downtime" in p.stdout,
      f"ferry migrate: {p.stdout.strip()} {p.stderr.strip()[-200:]}")
check(os.path.exists(svg) and "<svg" in open(svg).read() and "final" in open(svg).read(),
      "ferry migrate --timeline writes the SVG plot")
verify_progress(dst, "migrated restored VM")
mp = rest.q.ok("query-migrate-parameters")
check(mp.get("x-ferry-converge") == "throttle" and mp.get("x-ferry-max-passes") == 12,
      f"ferry migrate --converge/--max-passes set the parameters ({mp})")
p = subprocess.run([ferry, "migrate", "--qmp", dst.qmp_path, "tcp:127.0.0.1:1"],
                   capture_output=True, text=True, timeout=60)
check(p.returncode == 1 and "keeps running" in p.stderr,
      f"ferry migrate to a closed port fails clearly: {p.stderr.strip()}")
rest.stop()
dst.stop()

# ---- failure in later phases: the destination killed in a dirty pass after the first few, the
# link cut there, the destination killed after the final pass was sent (the source's guest is
# stopped: just before device state) and between the vCPU and VM device records. A proxy in
# front of the destination cuts every connection at that point (and kills the destination);
# for the switchover phases it follows the main channel's records. Each time the source runs
# on and its guest verifies the dirty pages and, with a sweep completed after the failure,
# every page of a hotplugged block.
src = Vm([])
check(src.wait_line("READY"), "later phases: source ready")
check("error" not in dev(src.q, "mem-block", "mem0", 0), "later phases: hotplug mem0")
check(src.wait_line("ONLINE mem 0", timeout=30), "later phases: mem0 online")
# Never fits the limit: the source runs its 30 dirty passes before switching over.
src.q.ok("migrate-set-parameters", **{"downtime-limit": 0})
t_phases = time.time()


def fail_at(where, kill):
    """One migration through a proxy that fails it at `where`; returns (query-migrate, proxy,
    destination, note)."""
    port = free_port()
    dst = Vm([], incoming=f"tcp:127.0.0.1:{port}")
    dev(dst.q, "mem-block", "mem0", 0)
    if where == "device":
        trigger = lambda kind, name, inst: kind == REC_DEVICE and name == "kvm-vm"  # noqa
    else:  # also the safety net of "pass": never let the migration complete
        trigger = lambda kind, name, inst: kind == REC_RAM_PASS and inst == FINAL_PASS  # noqa
    proxy = StreamProxy(port, trigger, dst.p.kill if kill else None)
    watch = Qmp(src.qmp_path)  # a second QMP client that waits on events
    src.q.ok("migrate-set-parameters", **{"max-bandwidth": 0})
    src.q.ok("migrate", uri=f"tcp:127.0.0.1:{proxy.port}")
    note = ""
    if where == "pass":
        # The first pass (all RAM) at full speed. Uncapped, the dirty passes take a few ms
        # each; from pass 2 on a cap below the guest's dirtying rate (4096 pages of ~34 delta
        # bytes per 16 MiB pass) makes each ~0.5 s, and the cut falls inside one of them.
        watch.wait_event("MIGRATION_PASS", **{"pass": 2})
        watch.ok("migrate-set-parameters", **{"max-bandwidth": 256 << 10})
        st = watch.ok("query-migrate")
        cap_pass = st.get("ram", {}).get("dirty-sync-count", 99) + 1
        if st.get("status") == "active" and cap_pass < 25:
            ev = watch.wait_event("MIGRATION_PASS", **{"pass": cap_pass + 2})
            time.sleep(0.1)
            proxy.fire()
            note = f"capped from pass {cap_pass}, cut in pass {cap_pass + 2}: {ev is not None}"
    end = time.time() + 30
    while time.time() < end:
        st = src.q.ok("query-migrate")
        if st.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.02)
    watch.s.close()
    return st, proxy, dst, note


for what, where, kill in (
        ("destination killed in a dirty pass", "pass", True),
        ("link cut in a dirty pass", "pass", False),
        ("destination killed after the final pass", "final", True),
        ("destination killed mid device state", "device", True)):
    for attempt in range(3):
        st, proxy, dst, note = fail_at(where, kill)
        passes = st.get("x-ferry", {}).get("passes", [])
        if where != "pass":
            break
        if any(p["final"] for p in passes):
            # The cap came too late (every dirty pass was over within milliseconds): the proxy
            # failed the switchover instead. Not this test's case: once more.
            print(f"     {what}: the source switched over before the cut, again")
        elif len(passes) >= 29 and not any(p["pages-sent"] for p in passes[3:]):
            # The guest wrote nothing while the empty passes ran out (its mem0 check holds the
            # writes for ~30 ms): nothing went out on the cut link before the last pass. Again.
            print(f"     {what}: no dirty page was sent after the cut, again")
        else:
            break
        dst.stop()
    err = st.get("error-desc", "")
    check(proxy.fired.is_set() and st.get("status") == "failed" and "cancelled" not in err,
          f"{what}: the source reports failed, naming the cause ({err})")
    if where == "pass":
        check(note.endswith("True") and not any(p["final"] for p in passes)
              and "acknowledgement" not in err and "draining" not in err,
              f"{what}: the source noticed while sending dirty pass {len(passes) + 1} ({note}; "
              f"ms/pages per pass {[(p['duration-us'] // 1000, p['pages-sent']) for p in passes]})")
    else:
        check(any(p["final"] for p in passes) and "acknowledgement" in err,
              f"{what}: cut before {proxy.record}, the source had stopped its guest and sent "
              f"everything")
    mark = len(src.out())
    check(src.status() == "running", f"{what}: the source keeps running")
    verify_progress(src, f"{what}: source")
    check(src.wait_line("VERIFY ok mem 0 sweep=", after=mark) and "VERIFY FAIL" not in src.out(),
          f"{what}: the source guest verifies all of mem0 after the failure")
    try:
        rc = dst.p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = None
    derr = dst.stop()
    check(rc == -signal.SIGKILL if kill else rc == 1 and "did not start" in derr,
          f"{what}: the destination {'was killed' if kill else 'exits 1, never ran'} (rc {rc})")
    check("READY" not in dst.out() and "VERIFY" not in dst.out(),
          f"{what}: no guest output on the destination")
src.stop()
print(f"later phases: {time.time() - t_phases:.1f} s")

print(f"\n{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
