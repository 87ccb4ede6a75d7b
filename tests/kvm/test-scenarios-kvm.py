#!/usr/bin/env python3
"""Hotplug scenarios of DESIGN.md section 7 between real `ferry run` processes on KVM that
test-migrate-run.py does not cover: S5 (migrate in the middle of a configure-connector
session), S6 (unplug requested, migrated before the guest released it), S11 (unplug and
re-plug of the same id and repeated device_del, on the source and again on the destination
after a migration), S12 (stale events
queued on the destination before the stream), S13 second half (ferry-1.0 with a hotplug in
flight to a destination knowing only base state), S14 (subsection unknown to the destination).
The firmware's test pacing (--workload ...,hp-step-delay=MS, docs/firmware.md) makes the
guest announce each hotplug protocol step on its serial line and wait, so a test can migrate
at a known point. Test-only migration parameters (docs/migration.md) emulate the other
builds of S13/S14. Qmp/Vm/migrate helpers come from ferrykvm.py.
usage: test-scenarios-kvm.py FERRY"""
import atexit
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import ferrykvm  # noqa: E402
from ferrykvm import (Qmp, Vm, check, dev, free_port, migrate, verify_progress,  # noqa: E402,F401
                      wait_event)

ferrykvm.init(sys.argv[1], "kvm-scenarios", "ferry-scen-kvm-")
ferry, tmp, failures = ferrykvm.ferry, ferrykvm.tmp, ferrykvm.failures


def steps(out, word, kind, slot):
    return [int(n) for n in re.findall(rf"^{word} {kind} {slot} step (\d+)$", out, re.M)]


PACE = "dirty,mb=16,report=1,hp-step-delay=%d"

# ---- S5: migrate in the middle of a configure-connector session
src = Vm([], workload=PACE % 400)
check(src.wait_line("READY"), "S5: source ready")
# Baseline: a session that is not interrupted, to know how many steps a cpu takes.
dev(src.q, "cpu", "cpu2", 2)
check(src.wait_line("ONLINE cpu 2", timeout=30), "S5: baseline cpu2 configured on the source")
base = steps(src.out(), "CC", "cpu", 2)
check(len(base) >= 2, f"S5: a cpu session has several paced steps ({base})")
dev(src.q, "cpu", "cpu1", 1)
check(src.wait_line("CC cpu 1 step 0"), "S5: the source guest is in cpu1's session")
port = free_port()
dst = Vm([], incoming=f"tcp:127.0.0.1:{port}", workload=PACE % 400)
dev(dst.q, "cpu", "cpu1", 1)
dev(dst.q, "cpu", "cpu2", 2)
st = migrate(src, f"tcp:127.0.0.1:{port}")
check(st.get("status") == "completed", f"S5: migration completes ({st.get('error-desc')})")
sout = src.out()
check("PLUGGED cpu 1" not in sout, "S5: migrated before the source guest finished the session")
check(dst.wait_line("ONLINE cpu 1", timeout=30), "S5: the destination guest brings cpu1 online")
time.sleep(0.5)
dout = dst.out()
s_steps, d_steps = steps(sout, "CC", "cpu", 1), steps(dout, "CC", "cpu", 1)
check(len(d_steps) >= 1 and d_steps[0] == s_steps[-1] + 1 and s_steps + d_steps == base,
      f"S5: the destination resumes the session at the next step, no step repeated "
      f"(source {s_steps}, destination {d_steps}, uninterrupted {base})")
check(dout.count("ONLINE cpu 1") == 1 and dout.count("PLUGGED cpu 1") == 1
      and "ERROR" not in dout and "DUPLICATE" not in dout,
      "S5: cpu1 configured exactly once, no protocol error on the destination")
check(src.q.ok("query-hotpluggable-cpus") == dst.q.ok("query-hotpluggable-cpus"),
      "S5: query-hotpluggable-cpus equal on both sides")
verify_progress(dst, "S5: destination")
src.stop()
dst.stop()

# ---- S6: unplug requested on the source, migrated before the guest released it
src = Vm([], workload=PACE % 1000)
check(src.wait_line("READY"), "S6: source ready")
src.q.ok("migrate-set-parameters", **{"max-bandwidth": 0})
dev(src.q, "cpu", "cpu1", 1)
check(src.wait_line("ONLINE cpu 1", timeout=40), "S6: cpu1 online on the source")
r = src.q.cmd("device_del", id="cpu1")
check("error" not in r, f"S6: device_del cpu1 accepted ({r.get('error')})")
check(src.wait_line("UNPLUG-WAIT cpu 1 step 0"), "S6: the source guest got the unplug request")
port = free_port()
dst = Vm([], incoming=f"tcp:127.0.0.1:{port}", workload=PACE % 1000)
dev(dst.q, "cpu", "cpu1", 1)
st = migrate(src, f"tcp:127.0.0.1:{port}")
check(st.get("status") == "completed", f"S6: migration completes ({st.get('error-desc')})")
check("UNPLUGGED cpu 1" not in src.out(), "S6: the source guest had not released cpu1")
check(not any(e["event"] == "DEVICE_DELETED" for e in src.q.events),
      "S6: no DEVICE_DELETED on the source")
check(dst.wait_line("UNPLUGGED cpu 1", timeout=20), "S6: the destination guest releases cpu1")
check(wait_event(dst.q, "DEVICE_DELETED", device="cpu1"),
      "S6: the destination emits DEVICE_DELETED for cpu1")
check("error" not in dev(dst.q, "cpu", "cpu1", 1), "S6: the id cpu1 is reusable on the destination")
check(dst.wait_line("ONLINE cpu 1", timeout=30), "S6: the re-added cpu1 comes online")
check("ERROR" not in dst.out(), "S6: no protocol error on the destination")
verify_progress(dst, "S6: destination")
src.stop()
dst.stop()

# ---- S11: unplug then re-plug the same id, repeated device_del; then migrate and do it again on
# the destination. Pacing holds each unplug request at UNPLUG-WAIT, so the repeated device_del
# (and a device_add of the same id) deterministically meet a pending unplug.
def unplug_replug(vm, driver, id, kind, slot, what):
    mark = len(vm.out())
    r = vm.q.cmd("device_del", id=id)
    check("error" not in r, f"{what}: device_del {id} accepted ({r.get('error')})")
    check(vm.wait_line(f"UNPLUG-WAIT {kind} {slot} step 0", after=mark),
          f"{what}: the guest got the unplug request for {id}")
    r = vm.q.cmd("device_del", id=id)
    check("already in the process of unplug" in r.get("error", {}).get("desc", ""),
          f"{what}: a repeated device_del {id} while pending is an error: {r.get('error')}")
    r = dev(vm.q, driver, id, slot)
    check("error" in r, f"{what}: device_add {id} while its unplug is pending is refused: "
          f"{r.get('error', {}).get('desc')}")
    check(vm.wait_line(f"UNPLUGGED {kind} {slot}", after=mark, timeout=30)
          and wait_event(vm.q, "DEVICE_DELETED", device=id),
          f"{what}: the guest releases {id}, DEVICE_DELETED")
    r = vm.q.cmd("device_del", id=id)
    check(r.get("error", {}).get("class") == "DeviceNotFound",
          f"{what}: device_del {id} after release: not found ({r.get('error')})")
    mark = len(vm.out())
    r = dev(vm.q, driver, id, slot)
    check("error" not in r, f"{what}: the same id {id} plugged again ({r.get('error')})")
    check(vm.wait_line(f"ONLINE {kind} {slot}", after=mark, timeout=30),
          f"{what}: the re-plugged {id} comes online")


def s11_counts(vm, what, plugged):
    """Serial lines and DEVICE_DELETED events per device: each unplug once, each plug once."""
    out = vm.out()
    vm.q.cmd("query-status")  # collect pending events
    for kind, slot, id in (("cpu", 1, "cpu1"), ("mem", 0, "mem0")):
        lines = {w: len(re.findall(rf"^{w} {kind} {slot}$", out, re.M))
                 for w in ("PLUGGED", "ONLINE", "UNPLUGGED")}
        deleted = sum(1 for e in vm.q.events
                      if e["event"] == "DEVICE_DELETED" and e["data"].get("device") == id)
        want = {"PLUGGED": plugged, "ONLINE": plugged, "UNPLUGGED": 1}
        check(lines == want and deleted == 1,
              f"{what}: {id}: serial {lines} (want {want}), DEVICE_DELETED x{deleted} (want 1)")
    check(not re.search(r"^(STALE|DUPLICATE|ERROR|FAULT)", out, re.M) and "VERIFY FAIL" not in out,
          f"{what}: no stale or duplicate event, no guest error")


src = Vm([], workload=PACE % 80)
check(src.wait_line("READY"), "S11: source ready")
for drv, id, slot in (("cpu", "cpu1", 1), ("mem-block", "mem0", 0)):
    check("error" not in dev(src.q, drv, id, slot), f"S11: hotplug {id} on the source")
check(src.wait_line("ONLINE cpu 1", timeout=30) and src.wait_line("ONLINE mem 0", timeout=30),
      "S11: cpu1 and mem0 online on the source")
unplug_replug(src, "cpu", "cpu1", "cpu", 1, "S11 source")
unplug_replug(src, "mem-block", "mem0", "mem", 0, "S11 source")
s11_counts(src, "S11 source", 2)
port = free_port()
dst = Vm([], incoming=f"tcp:127.0.0.1:{port}", workload=PACE % 80)
dev(dst.q, "cpu", "cpu1", 1)
dev(dst.q, "mem-block", "mem0", 0)
st = migrate(src, f"tcp:127.0.0.1:{port}")
check(st.get("status") == "completed", f"S11: migration completes ({st.get('error-desc')})")
check(src.q.ok("query-hotpluggable-cpus") == dst.q.ok("query-hotpluggable-cpus"),
      "S11: query-hotpluggable-cpus equal on both sides")
check(dst.wait_line("VERIFY ok mem 0 sweep=", timeout=20),
      "S11: the destination guest verifies the re-plugged mem0")
check(not re.search(r"^(PLUGGED|UNPLUGGED|ONLINE) ", dst.out(), re.M),
      "S11: nothing re-presented to the destination guest")
unplug_replug(dst, "cpu", "cpu1", "cpu", 1, "S11 destination")
unplug_replug(dst, "mem-block", "mem0", "mem", 0, "S11 destination")
s11_counts(dst, "S11 destination", 1)
verify_progress(dst, "S11: destination")
src.stop()
dst.stop()

# ---- S12: the destination's management plugs and unplugs other slots in inmigrate before the
# stream arrives; the source has a hotplug event queued (the guest is not ready yet). What the
# destination did before the stream must not add events: the guest sees exactly the source's.
src = Vm([], workload="dirty,mb=16,report=1,ready-delay=1500")
check(src.wait_line("BOOT"), "S12: source booting (ready in 1.5 s)")
dev(src.q, "cpu", "cpu1", 1)
port = free_port()
dst = Vm([], incoming=f"tcp:127.0.0.1:{port}")
dev(dst.q, "cpu", "cpu1", 1)
for drv, id, slot in (("cpu", "cpu3", 3), ("mem-block", "mem0", 0)):
    r = dev(dst.q, drv, id, slot)
    check("error" not in r, f"S12: device_add {id} on the destination in inmigrate ({r.get('error')})")
    r = dst.q.cmd("device_del", id=id)
    check("error" not in r, f"S12: device_del {id} on the destination in inmigrate ({r.get('error')})")
st = migrate(src, f"tcp:127.0.0.1:{port}")
check(st.get("status") == "completed", f"S12: migration completes ({st.get('error-desc')})")
check("READY" not in src.out(), "S12: migrated with the source's event still queued")
check(dst.wait_line("ONLINE cpu 1", timeout=20), "S12: the destination guest configures cpu1")
verify_progress(dst, "S12: destination")
dout = dst.out()
events = re.findall(r"^(?:PLUGGED|UNPLUGGED|STALE|DUPLICATE) .*$", dout, re.M)
check(events == ["PLUGGED cpu 1"] and "ERROR" not in dout,
      f"S12: the destination guest sees exactly the source's event: {events}")
check(src.q.ok("query-hotpluggable-cpus") == dst.q.ok("query-hotpluggable-cpus"),
      "S12: query-hotpluggable-cpus equal on both sides")
src.stop()
dst.stop()

# ---- S13 (second half): ferry-1.0 source to a destination that only knows ferry-1.0's base
# state. Emulated with the destination's test hook x-ferry-test-no-subsections (it loads as a
# build that knows no subsection). Control first: nothing in flight, the stream is accepted.
for in_flight in (False, True):
    what = "S13 in flight" if in_flight else "S13 control"
    wl = "dirty,mb=16,report=1" + (",ready-delay=2000" if in_flight else "")
    src = Vm(["--machine", "ferry-1.0"], workload=wl)
    dev_after = "BOOT" if in_flight else "READY"
    check(src.wait_line(dev_after), f"{what}: ferry-1.0 source up")
    dev(src.q, "cpu", "cpu1", 1)
    if not in_flight:
        check(src.wait_line("ONLINE cpu 1"), f"{what}: cpu1 online (nothing in flight)")
    port = free_port()
    dst = Vm(["--machine", "ferry-1.0"], incoming=f"tcp:127.0.0.1:{port}")
    dst.q.ok("migrate-set-parameters", **{"x-ferry-test-no-subsections": True})
    dev(dst.q, "cpu", "cpu1", 1)
    st = migrate(src, f"tcp:127.0.0.1:{port}")
    err = st.get("error-desc", "")
    if not in_flight:
        check(st.get("status") == "completed", f"{what}: the old destination accepts ({err})")
        verify_progress(dst, f"{what}: destination")
        src.stop()
        dst.stop()
        continue
    check("READY" not in src.out(), f"{what}: migrated with cpu1's hotplug in flight")
    check(st.get("status") == "failed" and "unknown subsection" in err
          and "connector/state" in err,
          f"{what}: fails naming the unknown subsection: {err!r}")
    check(src.status() == "running", f"{what}: the source keeps running")
    check(src.wait_line("ONLINE cpu 1", timeout=20), f"{what}: the source guest completes the hotplug")
    verify_progress(src, f"{what}: source")
    try:
        rc = dst.p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = None
    derr = dst.stop()
    check(rc == 1 and "did not start" in derr, f"{what}: the destination exits 1, never ran "
          f"(rc {rc})")
    src.stop()

# ---- S14: a subsection unknown to the destination (x-ferry-test-subsection, test only: the
# source adds "<section>/x-ferry-test" to its first device record)
for mode in ("optional", "mandatory"):
    src = Vm([])
    check(src.wait_line("READY"), f"S14 {mode}: source ready")
    dev(src.q, "cpu", "cpu1", 1)
    check(src.wait_line("ONLINE cpu 1"), f"S14 {mode}: cpu1 online")
    src.q.ok("migrate-set-parameters", **{"x-ferry-test-subsection": mode})
    port = free_port()
    dst = Vm([], incoming=f"tcp:127.0.0.1:{port}")
    dev(dst.q, "cpu", "cpu1", 1)
    st = migrate(src, f"tcp:127.0.0.1:{port}")
    err = st.get("error-desc", "")
    if mode == "optional":
        check(st.get("status") == "completed", f"S14 optional: migration completes ({err})")
        time.sleep(0.3)
        check(dst.status() == "running", "S14 optional: the destination runs")
        verify_progress(dst, "S14 optional: destination")
        derr = dst.stop()
        check("warning" in derr and "x-ferry-test" in derr,
              f"S14 optional: the destination warns naming the subsection: {derr.strip()!r}")
    else:
        check(st.get("status") == "failed" and "x-ferry-test" in err,
              f"S14 mandatory: migration fails naming the subsection: {err!r}")
        check(src.status() == "running", "S14 mandatory: the source keeps running")
        verify_progress(src, "S14 mandatory: source")
        try:
            rc = dst.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        derr = dst.stop()
        check(rc not in (0, None) and "did not start" in derr and "x-ferry-test" in derr,
              f"S14 mandatory: the destination exits non-zero and never ran (rc {rc}): "
              f"{derr.strip()!r}")
        check("VERIFY" not in dst.out(), "S14 mandatory: no guest output on the destination")
    src.stop()

print(f"\n{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
