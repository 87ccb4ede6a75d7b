#!/usr/bin/env python3
"""End to end on KVM: `ferry run` with the built-in firmware, driven over QMP, observed through
the guest's serial lines (docs/firmware.md). Hotplug and unplug of vCPUs and memory blocks,
replug, hotplug before readiness (S7) and across a reset (S8), the dirty workload, a boot
sector, --incoming (inmigrate, S2 coldplug), and QMP robustness against the real process.
usage: test-hotplug.py FERRY GUEST_DIR [CASE...]"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ferryvm import FerryVm  # noqa: E402

ferry, guest_dir = sys.argv[1:3]
only = set(sys.argv[3:])
failures = []
HP = ["--smp", "1,maxcpus=4", "--memory", "128M", "--maxmem", "640M"]


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)
    return cond


def lines(text, word):
    return [l for l in text.splitlines() if l == word]


def case_boot(d):
    vm = FerryVm(ferry, d, "--smp", "2,maxcpus=2")
    text = vm.wait_serial("^READY$")
    check(text.startswith("BOOT ferry-fw cpus=2/2 mem=128M\n"), "banner first: %r" % text[:60])
    check(lines(text, "ONLINE cpu 1"), "boot AP 1 online before READY: %r" % text)
    st = vm.execute("query-status")
    check(st == {"running": True, "singlestep": False, "status": "running"}, "status %s" % st)
    mode = os.stat(vm.qmp_path).st_mode & 0o777
    check(mode == 0o600, "QMP socket mode %o, want 600" % mode)
    cpus = vm.execute("query-hotpluggable-cpus")
    check([c["props"]["slot"] for c in cpus] == [1, 0], "cpu slots listed: %s" % cpus)
    check(all("qom-path" in c for c in cpus), "both boot cpus present: %s" % cpus)
    rc, out, err = vm.quit()
    check(rc == 0, "quit exits 0: %d %s" % (rc, err))


def case_hotplug(d):
    vm = FerryVm(ferry, d, *HP)
    vm.wait_serial("^READY$")
    vm.execute("device_add", driver="cpu", id="cpu2", slot=2)
    text = vm.wait_serial("^ONLINE cpu 2$")
    check(text.index("PLUGGED cpu 2") < text.index("ONLINE cpu 2"), "PLUGGED before ONLINE")
    vm.execute("device_add", driver="mem-block", id="mem1", slot="1")
    text = vm.wait_serial("^ONLINE mem 1$")
    check(len(lines(text, "PLUGGED mem 1")) == 1, "mem plugged once: %r" % text)
    mems = vm.execute("query-memory-devices")
    check(len(mems) == 1 and mems[0]["type"] == "dimm", "one dimm: %s" % mems)
    if mems:
        data = mems[0]["data"]
        check(data["id"] == "mem1" and data["addr"] == (4 << 30) + (128 << 20) and
              data["size"] == 128 << 20 and data["hotplugged"] is True and data["slot"] == 1,
              "memory device data: %s" % data)
    cpus = {c["props"]["slot"]: c for c in vm.execute("query-hotpluggable-cpus")}
    check(cpus[2].get("qom-path", "").endswith("/cpu2"), "cpu2 in slot 2: %s" % cpus[2])
    check("qom-path" not in cpus[3], "slot 3 empty: %s" % cpus[3])

    # Unplug both: the guest stops using them, releases, and DEVICE_DELETED follows.
    vm.execute("device_del", id="cpu2")
    ev = vm.wait_event("DEVICE_DELETED", pred=lambda e: e["data"].get("device") == "cpu2")
    check(ev["data"]["path"].endswith("/cpu2"), "DEVICE_DELETED path: %s" % ev)
    vm.wait_serial("^UNPLUGGED cpu 2$")
    vm.execute("device_del", id="mem1")
    vm.wait_event("DEVICE_DELETED", pred=lambda e: e["data"].get("device") == "mem1")
    vm.wait_serial("^UNPLUGGED mem 1$")
    check(vm.execute("query-memory-devices") == [], "no memory devices after unplug")

    # Replug the same ids (S11): a new vCPU run and a fresh memslot.
    vm.execute("device_add", driver="cpu", id="cpu2", slot=2)
    vm.execute("device_add", driver="mem-block", id="mem1", slot=1)
    text = vm.wait_serial("^ONLINE mem 1$", count=2)
    text = vm.wait_serial("^ONLINE cpu 2$", count=2)
    check("ERROR" not in text and "STALE" not in text, "no errors in the guest: %r" % text)

    # device_del while one is pending: stopped guest cannot release; second one is an error.
    vm.execute("stop")
    vm.wait_event("STOP")
    vm.execute("device_del", id="cpu2")
    r = vm.command("device_del", id="cpu2")
    check(r.get("error") == {"class": "GenericError",
                             "desc": "Device cpu2 is already in the process of unplug"},
          "repeated device_del: %s" % r)
    r = vm.command("device_del", id="nosuch")
    check(r.get("error", {}).get("class") == "DeviceNotFound", "unknown id: %s" % r)
    r = vm.command("device_del", id="cpu0")
    check("error" in r, "boot CPU unplug refused: %s" % r)
    vm.execute("cont")
    vm.wait_event("RESUME")
    vm.wait_event("DEVICE_DELETED", pred=lambda e: e["data"].get("device") == "cpu2")
    text = vm.wait_serial("^UNPLUGGED cpu 2$", count=2)
    check(len(lines(text, "UNPLUGGED cpu 2")) == 2, "released exactly twice: %r" % text)

    # maxmem: 128M + 4 blocks = 640M; a fifth block does not fit (and slot 4 does not exist).
    for s in (0, 2, 3):
        vm.execute("device_add", driver="mem-block", id="m%d" % s, slot=s)
    r = vm.command("device_add", driver="mem-block", id="m4", slot=4)
    check("error" in r, "fifth memory block refused: %s" % r)
    vm.wait_serial("^ONLINE mem 3$", timeout=30)
    rc, out, err = vm.quit()
    check(rc == 0, "quit: %d %s" % (rc, err))


def case_s7_before_ready(d):
    vm = FerryVm(ferry, d, *HP, "--workload", "idle,ready-delay=1500")
    vm.wait_serial("^BOOT ")
    vm.execute("device_add", driver="cpu", id="cpu1", slot=1)
    vm.execute("device_add", driver="mem-block", id="mem0", slot=0)
    check("READY" not in vm.serial(), "hotplug happened before readiness")
    text = vm.wait_serial("^ONLINE mem 0$")
    text = vm.wait_serial("^ONLINE cpu 1$")
    check(len(lines(text, "PLUGGED cpu 1")) == 1 and len(lines(text, "ONLINE cpu 1")) == 1,
          "S7: configured once: %r" % text)
    check(text.index("READY") < text.index("PLUGGED cpu 1"), "event handled after READY")
    vm.quit()


def case_s8_reset(d):
    vm = FerryVm(ferry, d, *HP)
    vm.wait_serial("^READY$")
    vm.execute("device_add", driver="mem-block", id="mem0", slot=0)
    vm.wait_serial("^ONLINE mem 0$")
    vm.execute("stop")
    vm.wait_event("STOP")
    vm.execute("device_add", driver="cpu", id="cpu3", slot=3)
    vm.execute("device_del", id="mem0")  # pending: the stopped guest cannot release it
    check(len(vm.execute("query-memory-devices")) == 1, "mem0 still there while pending")
    vm.execute("system_reset")
    ev = vm.wait_event("DEVICE_DELETED")
    check(ev["data"]["device"] == "mem0", "reset completes the pending unplug: %s" % ev)
    check(vm.execute("query-memory-devices") == [], "mem0 gone after reset")
    ev = vm.wait_event("RESET")
    check(ev["data"] == {"guest": False, "reason": "host-qmp-system-reset"}, "RESET %s" % ev)
    st = vm.execute("query-status")
    check(st["status"] == "prelaunch", "reset of a paused VM -> prelaunch: %s" % st)
    vm.execute("cont")
    text = vm.wait_serial("^READY$", count=2)
    text = vm.wait_serial("^ONLINE cpu 3$")
    after = text[text.rindex("BOOT "):]
    check("PLUGGED cpu 3" not in text, "S8: no stale event, present as coldplugged: %r" % text)
    check("ONLINE cpu 3" in after, "cpu3 online after the reboot: %r" % after)
    check("mem 0" not in after, "released block not used after the reboot: %r" % after)
    # A reset of a running VM keeps it running; the hotplugged AP comes back after READY.
    vm.execute("system_reset")
    vm.wait_event("RESET")
    vm.wait_serial("^ONLINE cpu 3$", count=2)
    check(vm.execute("query-status")["status"] == "running", "still running after reset")
    vm.quit()


def case_prelaunch(d):
    vm = FerryVm(ferry, d, *HP, "-S", "--device", "cpu,id=cpu1,slot=1")
    check(vm.execute("query-status")["status"] == "prelaunch", "-S: prelaunch")
    vm.execute("device_add", driver="mem-block", id="mem2", slot=2)  # S1: coldplug
    time.sleep(0.3)
    check(vm.serial() == "", "nothing runs in prelaunch: %r" % vm.serial())
    vm.execute("cont")
    vm.wait_event("RESUME")
    text = vm.wait_serial("^READY$")
    check(lines(text, "ONLINE cpu 1") and lines(text, "ONLINE mem 2"),
          "coldplugged devices online at boot: %r" % text)
    check("PLUGGED" not in text, "coldplug raises no event (S1): %r" % text)
    mems = vm.execute("query-memory-devices")
    check(mems and mems[0]["data"]["hotplugged"] is False, "coldplugged dimm: %s" % mems)
    vm.quit()


def case_dirty_workload(d):
    vm = FerryVm(ferry, d, "--memory", "64M", "--workload", "dirty,mb=8,report=2")
    text = vm.wait_serial(r"^VERIFY ok pass=4$", timeout=30)
    check("VERIFY FAIL" not in text, "no verification failure: %r" % text)
    # Hotplug is still served while the workload runs (interrupt, not polling).
    vm.execute("device_add", driver="card", id="card1", slot=1)
    vm.wait_serial("^ONLINE card 1$")
    vm.quit()


def case_boot_sector(d):
    vm = FerryVm(ferry, d, "--boot-sector", os.path.join(guest_dir, "dirty.img"))
    text = vm.wait_serial("B.*B", timeout=30)
    check(text.startswith("AB"), "dirty.img prints A then B per pass: %r" % text[:20])
    rc, out, err = vm.quit()
    check(rc == 0, "quit: %d %s" % (rc, err))


def case_qmp_robustness(d):
    vm = FerryVm(ferry, d, *HP)
    vm.wait_serial("^READY$")
    bad = [
        ({"execute": "device_add", "arguments": {"id": "x"}}, "GenericError",
         "Parameter 'driver' is missing"),
        ({"execute": "device_add", "arguments": {"driver": "gpu", "id": "g"}}, "GenericError",
         "'gpu' is not a valid device model name"),
        ({"execute": "device_add", "arguments": {"driver": "cpu", "id": "c", "slot": 9}},
         "GenericError", "out of range"),
        ({"execute": "device_add", "arguments": {"driver": "cpu", "id": "c", "slot": [1]}},
         "GenericError", "Invalid parameter type"),
        ({"execute": "device_add", "arguments": {"driver": "cpu", "slot": 1}}, "GenericError",
         "'id' is required"),
        ({"execute": "device_add", "arguments": {"driver": "cpu", "id": "cpu0", "slot": 1}},
         "GenericError", "duplicate device id 'cpu0'"),
        ({"execute": "device_add", "arguments": {"driver": "mem-block", "id": "m", "slot": 0,
                                                 "size": "256M"}}, "GenericError", "128M"),
        ({"execute": "device_del", "arguments": {"id": 5}}, "GenericError",
         "Invalid parameter type for 'id'"),
        ({"execute": "system_reset", "arguments": {"now": True}}, "GenericError",
         "Parameter 'now' is unexpected"),
        ({"execute": "no-such-command"}, "CommandNotFound", "no-such-command"),
    ]
    import json
    for msg, cls, needle in bad:
        vm.send_raw(json.dumps(msg).encode())
        r = vm.recv()
        while "event" in r:
            r = vm.recv()
        err = r.get("error", {})
        check(err.get("class") == cls and needle in err.get("desc", ""),
              "%s -> %s, want %s %r" % (msg, r, cls, needle))
    for raw in [b"{\"execute\": ", b"}}}\n", b"\xff\xfe garbage\n", b"[1, 2]\n", b"{}\n"]:
        vm.send_raw(raw)
    vm.send_raw(b"\n")
    # Whatever the garbage produced, the server answers the next command and the VM runs.
    time.sleep(0.2)
    vm.buf = b""
    vm.sock.settimeout(0.5)
    try:
        while vm.sock.recv(65536):
            pass
    except OSError:
        pass
    st = vm.execute("query-status")
    check(st["status"] == "running", "VM still running after bad input: %s" % st)
    check(not vm.execute("query-memory-devices"), "no stray device from refused device_add")
    r = vm.command("cont")
    check("return" in r, "cont while running is a no-op: %s" % r)
    # A client that vanishes mid-command, then a new one: the process and the VM carry on.
    vm.send_raw(b'{"execute": "query-hotpluggable-cpus"}\n{"execute": "query-sta')
    vm.sock.close()
    vm.buf = b""
    vm._connect()
    check(vm.execute("query-status")["status"] == "running", "new client after a cut one")
    rc, out, err = vm.quit()
    check(rc == 0 and "SHUTDOWN" not in err, "quit after abuse: %d %s" % (rc, err))


def case_shutdown_event(d):
    vm = FerryVm(ferry, d)
    vm.wait_serial("^READY$")
    vm.send_raw(b'{"execute": "quit"}\n')
    ev = None
    while True:
        r = vm.recv()
        if r.get("event") == "SHUTDOWN":
            ev = r
        if "return" in r:
            break
    check(ev and ev["data"] == {"guest": False, "reason": "host-qmp-quit"}, "SHUTDOWN %s" % ev)
    rc, out, err = vm.wait()
    check(rc == 0, "exit after quit: %d" % rc)
    check(not os.path.exists(vm.qmp_path), "socket removed at exit")


def case_incoming(d):
    vm = FerryVm(ferry, d, *HP, "--incoming", "tcp:127.0.0.1:1")
    check(vm.execute("query-status") == {"running": False, "singlestep": False,
                                          "status": "inmigrate"}, "parked in inmigrate")
    vm.execute("device_add", driver="cpu", id="cpu1", slot=1)  # S2: coldplug before the stream
    vm.execute("device_add", driver="mem-block", id="mem0", slot=0)
    r = vm.command("system_reset")
    check("error" in r, "no reset while waiting for a stream: %s" % r)
    vm.execute("cont")  # only records autostart
    check(vm.execute("query-status")["status"] == "inmigrate", "cont does not start it")
    mems = vm.execute("query-memory-devices")
    check(len(mems) == 1 and mems[0]["data"]["hotplugged"] is False, "coldplugged: %s" % mems)
    time.sleep(0.2)
    check(vm.serial() == "", "nothing boots: %r" % vm.serial())
    rc, out, err = vm.quit()
    check(rc == 0 and "inmigrate" in err, "quit: %d %r" % (rc, err))


CASES = [case_boot, case_hotplug, case_s7_before_ready, case_s8_reset, case_prelaunch,
         case_dirty_workload, case_boot_sector, case_qmp_robustness, case_shutdown_event,
         case_incoming]

if not os.access("/dev/kvm", os.R_OK | os.W_OK):
    print("\n*** SKIPPED kvm-hotplug: /dev/kvm is not usable; the KVM tests did NOT run ***\n",
          file=sys.stderr)
    sys.exit(77)

for case in CASES:
    name = case.__name__[5:]
    if only and name not in only:
        continue
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        try:
            case(d)
        except Exception as e:  # a hang or crash is a failure of that case, not of the run
            check(False, "%s: %s: %s" % (name, type(e).__name__, e))
    print("%-20s %s (%.1fs)" % (name, "ok" if not any(f for f in failures) else "...",
                               time.monotonic() - t0), flush=True)

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
