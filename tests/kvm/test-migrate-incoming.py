#!/usr/bin/env python3
"""QEMU's deferred incoming migration between real `ferry run` processes: a destination started
with `--incoming defer` waits in inmigrate without listening, gets its devices by device_add,
then QMP migrate-incoming starts the listener (tcp:, and unix: for a paused source) and a live
migration of the built-in firmware's verifying workload completes. Also the refusals of
migrate-incoming (QEMU's words, compared with QEMU 7.2 when installed), the command-line errors,
and the source's STOP at switchover (RESUME when a failure after the stop gives the guest back).
usage: test-migrate-incoming.py FERRY"""
import os
import shutil
import subprocess
import sys
import time

import ferrykvm  # noqa: E402
from ferrykvm import Vm, check, dev, free_port, verify_progress  # noqa: E402

ferrykvm.init(sys.argv[1], "kvm-migrate-incoming", "ferry-mig-inc-")
ferry, failures = ferrykvm.ferry, ferrykvm.failures


def names(q):
    return [e["event"] if e["event"] != "MIGRATION" else "MIGRATION " + e["data"]["status"]
            for e in q.events]


def wait_migration(q, timeout=30):
    """Poll until a final MIGRATION event arrived (events come in between replies)."""
    end = time.time() + timeout
    while time.time() < end:
        q.cmd("query-status")
        done = [n for n in names(q) if n in ("MIGRATION completed", "MIGRATION failed",
                                             "MIGRATION cancelled")]
        if done:
            return done[0]
        time.sleep(0.02)
    return None


def err_desc(r):
    return r.get("error", {}).get("desc", "")


ferry_refusals = {}  # case -> Ferry's error object, compared with QEMU 7.2's at the end


def qemu_refusals(qemu):
    """QEMU's answers to migrate-incoming in the same three cases (machine none: no guest)."""
    out = {}
    cases = {"no --incoming": ([], 1),
             "--incoming URI": (["-incoming", f"tcp:127.0.0.1:{free_port()}"], 1),
             "second after defer": (["-incoming", "defer"], 2)}
    for case, (extra, n) in cases.items():
        path = os.path.join(ferrykvm.tmp, "qemu.qmp")
        p = subprocess.Popen([qemu, "-machine", "none", "-display", "none", "-nodefaults",
                              "-qmp", f"unix:{path},server=on,wait=off"] + extra,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            q = ferrykvm.Qmp(path)
            for _ in range(n):
                r = q.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{free_port()}")
            out[case] = r.get("error")
        finally:
            p.kill()
            p.wait()
            if os.path.exists(path):
                os.unlink(path)
    return out


# ---- command line: defer needs QMP; --incoming and --restore are exclusive
p = subprocess.run([ferry, "run", "--incoming", "defer"], capture_output=True, text=True,
                   timeout=10)
check(p.returncode == 2 and "--incoming defer" in p.stderr and "--qmp" in p.stderr,
      f"--incoming defer without --qmp is a usage error: {p.stderr.strip()!r}")
p = subprocess.run([ferry, "run", "--incoming", "tcp:127.0.0.1:1", "--restore", "x.snap"],
                   capture_output=True, text=True, timeout=10)
check(p.returncode == 2 and "--restore" in p.stderr and "--incoming" in p.stderr,
      f"--incoming with --restore is a usage error: {p.stderr.strip()!r}")

# ---- the source: hotplug cpu1 and mem0; migrate-incoming refused (no --incoming)
src = Vm([])
check(src.wait_line("VERIFY ok"), "source boots and verifies")
check("error" not in dev(src.q, "cpu", "cpu1", 1), "hotplug cpu1 on the source")
check("error" not in dev(src.q, "mem-block", "mem0", 0), "hotplug mem0 on the source")
check(src.wait_line("ONLINE cpu 1") and src.wait_line("ONLINE mem 0"),
      "the source guest brings cpu1 and mem0 online")
r = src.q.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{free_port()}")
ferry_refusals["no --incoming"] = r.get("error")
check(err_desc(r) == "'-incoming' was not specified on the command line",
      f"migrate-incoming without --incoming: QEMU's refusal: {err_desc(r)!r}")
check(src.status() == "running" and src.q.ok("query-migrate") == {},
      "the refused migrate-incoming changed nothing on the source")

# ---- --incoming URI already started the incoming migration
port = free_port()
uri_dst = Vm([], incoming=f"tcp:127.0.0.1:{port}")
r = uri_dst.q.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{free_port()}")
ferry_refusals["--incoming URI"] = r.get("error")
check(err_desc(r) == "The incoming migration has already been started",
      f"migrate-incoming after --incoming URI: QEMU's refusal: {err_desc(r)!r}")
uri_dst.stop()

# ---- --incoming defer: inmigrate, not listening; devices by device_add; bad URI; start
dst = Vm(["--incoming", "defer"])
check(dst.status() == "inmigrate", "deferred destination waits in inmigrate")
check(dst.q.ok("query-migrate") == {}, "deferred destination is not listening yet")
check("error" not in dev(dst.q, "cpu", "cpu1", 1), "coldplug cpu1 on the deferred destination")
check("error" not in dev(dst.q, "mem-block", "mem0", 0), "coldplug mem0 on the deferred "
      "destination")
r = dst.q.cmd("migrate-incoming", uri="bogus:1234")
check("bogus:1234" in err_desc(r) and "unknown transport" in err_desc(r),
      f"migrate-incoming with a bad URI names it: {err_desc(r)!r}")
r = dst.q.cmd("migrate-incoming", uri="tcp:127.0.0.1:notaport")
check("tcp:127.0.0.1:notaport" in err_desc(r),
      f"migrate-incoming with a bad port names the URI: {err_desc(r)!r}")
check(dst.status() == "inmigrate" and dst.q.ok("query-migrate") == {},
      "after the refused URIs the destination still waits, not listening")
port = free_port()
r = dst.q.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
check(r.get("return") == {}, f"migrate-incoming tcp:127.0.0.1:{port} accepted ({err_desc(r)})")
check(dst.q.ok("query-migrate").get("status") == "setup", "the destination now listens (setup)")
r = dst.q.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{free_port()}")
ferry_refusals["second after defer"] = r.get("error")
check(err_desc(r) == "The incoming migration has already been started",
      f"a second migrate-incoming is refused: {err_desc(r)!r}")

# ---- live migration into the deferred destination; STOP at switchover on the source
src.q.ok("migrate", uri=f"tcp:127.0.0.1:{port}")
final = wait_migration(src.q)
check(final == "MIGRATION completed", f"migration completes ({src.q.ok('query-migrate')})")
check(src.status() == "postmigrate", "source in postmigrate")
ev = names(src.q)
check(ev.count("STOP") == 1 and "RESUME" not in ev,
      f"the source emitted one STOP and no RESUME: {ev}")
if all(n in ev for n in ("MIGRATION active", "STOP", "MIGRATION device", "MIGRATION completed")):
    check(ev.index("MIGRATION active") < ev.index("STOP") < ev.index("MIGRATION device")
          < ev.index("MIGRATION completed"),
          f"STOP between active and device, before completed (QEMU's order): {ev}")
else:
    check(False, f"MIGRATION active, STOP, MIGRATION device and completed on the source: {ev}")
end = time.time() + 10
while time.time() < end and dst.status() != "running":
    time.sleep(0.05)
check(dst.status() == "running", "destination running")
verify_progress(dst, "deferred destination")
dout = dst.out()
check("PLUGGED" not in dout and "DUPLICATE" not in dout and "STALE" not in dout,
      "the destination guest sees cpu1/mem0 configured, no event presented again")
check(src.q.ok("query-hotpluggable-cpus") == dst.q.ok("query-hotpluggable-cpus"),
      "query-hotpluggable-cpus equal on source and destination")
src.stop()
dst.stop()

# ---- a failure after the switchover stop: STOP then RESUME, the source runs on. The source
# adds a mandatory subsection no destination knows (x-ferry-test-subsection, test only), so the
# destination refuses the device records, which come after the stop.
src = Vm([])
check(src.wait_line("VERIFY ok"), "second source verifies")
src.q.ok("migrate-set-parameters", **{"x-ferry-test-subsection": "mandatory"})
dst = Vm(["--incoming", "defer"])
port = free_port()
dst.q.ok("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
src.q.ok("migrate", uri=f"tcp:127.0.0.1:{port}")
final = wait_migration(src.q)
check(final == "MIGRATION failed", f"migration fails ({src.q.ok('query-migrate')})")
ev = names(src.q)
ok = "STOP" in ev and "RESUME" in ev and "MIGRATION failed" in ev
check(ok and ev.index("STOP") < ev.index("RESUME") < ev.index("MIGRATION failed")
      and ev.count("STOP") == 1 and ev.count("RESUME") == 1,
      f"failure after the stop: STOP, then RESUME, then MIGRATION failed: {ev}")
check(src.status() == "running", "the source keeps running")
verify_progress(src, "source after the failed migration")
try:
    rc = dst.p.wait(timeout=10)
except subprocess.TimeoutExpired:
    rc = None
check(rc == 1, "the deferred destination exits 1 and never ran")
dst.stop()

# ---- cancel before the switchover: no STOP, no RESUME (the guest never stopped)
src.q.events.clear()
src.q.ok("migrate-set-parameters", **{"x-ferry-test-subsection": "none", "max-bandwidth": 8 << 20})
dst = Vm(["--incoming", "defer"])
port = free_port()
dst.q.ok("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
src.q.ok("migrate", uri=f"tcp:127.0.0.1:{port}")
time.sleep(0.3)
src.q.ok("migrate_cancel")
final = wait_migration(src.q)
ev = names(src.q)
check(final == "MIGRATION cancelled" and "STOP" not in ev and "RESUME" not in ev,
      f"cancel before switchover: no STOP/RESUME: {ev}")
check(src.status() == "running", "cancel: the source keeps running")
dst.stop()

# ---- a paused source, over unix: this time: its STOP came with `stop`; the switchover emits
# none
src.q.ok("migrate-set-parameters", **{"max-bandwidth": 0})
src.q.ok("stop")
src.q.events.clear()
dst = Vm(["--incoming", "defer"])
sock = os.path.join(ferrykvm.tmp, "mig.sock")
dst.q.ok("migrate-incoming", uri="unix:" + sock)
src.q.ok("migrate", uri="unix:" + sock)
final = wait_migration(src.q)
ev = names(src.q)
check(final == "MIGRATION completed" and "STOP" not in ev and "RESUME" not in ev,
      f"paused source: no STOP/RESUME from the migration: {ev} "
      f"({src.q.ok('query-migrate').get('status')})")
check(src.status() == "postmigrate", "paused source ends in postmigrate")
src.stop()
dst.stop()

# ---- the refusals, class and text, against QEMU 7.2 itself when it is installed
qemu = shutil.which("qemu-system-x86_64")
if qemu:
    theirs = qemu_refusals(qemu)
    for case, ours in ferry_refusals.items():
        check(ours == theirs.get(case), f"migrate-incoming, {case}: Ferry {ours} == QEMU "
              f"{theirs.get(case)}")
else:
    print("note: qemu-system-x86_64 not installed; refusals not compared with QEMU")

print(f"\n{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
