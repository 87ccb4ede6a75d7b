#!/usr/bin/env python3
"""ferry analyze on a real Ferry snapshot: a dirtying boot-sector guest is migrated to file:
while it runs (so the stream holds zero, raw and delta pages), then analyze must verify it,
decode every device record by the embedded schema, and --extract-ram must rebuild guest RAM:
the boot sector at 0x7c00 and the guest's counters (first byte of every page in [1, 100) MiB,
all equal or one apart, everything else in those pages zero). A lost delta or a misplaced run
breaks these. Usage: test-analyze-snapshot.py FERRY GUEST_DIR"""
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ferry, guest_dir = sys.argv[1:3]
if not os.access("/dev/kvm", os.R_OK | os.W_OK):
    print("\n*** SKIPPED kvm-analyze-snapshot: /dev/kvm is not usable; nothing ran ***\n",
          file=sys.stderr)
    sys.exit(77)
img_path = os.path.join(guest_dir, "dirty.img")
if not os.path.exists(img_path):
    print(f"\n*** SKIPPED kvm-analyze-snapshot: {img_path} is missing ***\n", file=sys.stderr)
    sys.exit(77)
tmp = tempfile.mkdtemp(prefix="ferry-analyze-snap-")
atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # the snapshot is ~100 MiB
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


qmp_path = os.path.join(tmp, "q.sock")
vm = subprocess.Popen([ferry, "run", "--memory", "256M", "--boot-sector", img_path, "--qmp",
                       "unix:" + qmp_path, "--serial", os.path.join(tmp, "serial.log")],
                      stderr=subprocess.DEVNULL)
try:
    for _ in range(200):
        if os.path.exists(qmp_path):
            break
        time.sleep(0.02)
    s = socket.socket(socket.AF_UNIX)
    s.connect(qmp_path)
    # Separate files: writing on a "rw" text file drops lines it has read ahead.
    f = s.makefile("r")
    w = s.makefile("w")
    f.readline()

    def cmd(name, **args):
        w.write(json.dumps({"execute": name, **({"arguments": args} if args else {})}) + "\n")
        w.flush()
        while True:
            r = json.loads(f.readline())
            if "event" not in r:
                return r

    cmd("qmp_capabilities")
    time.sleep(0.5)  # a few passes of the guest's loop
    # A capped rate keeps the guest dirtying pages between passes: deltas appear.
    cmd("migrate-set-parameters", **{"max-bandwidth": 200 << 20})
    snap = os.path.join(tmp, "vm.snap")
    cmd("migrate", uri="file:" + snap)
    st = {}
    for _ in range(600):
        st = cmd("query-migrate")["return"]
        if st.get("status") in ("completed", "failed"):
            break
        time.sleep(0.05)
    check(st.get("status") == "completed", f"snapshot written ({st.get('status')})")
    cmd("quit")
finally:
    vm.wait(timeout=20)

p = subprocess.run([ferry, "analyze", snap], capture_output=True, text=True, timeout=60)
check(p.returncode == 0, f"analyze exits 0 ({p.stderr.strip()[-200:]})")
doc = json.loads(p.stdout)
ram = doc["ram"]
check(ram["zero_pages"] > 0 and ram["raw_pages"] > 0 and ram["delta_pages"] > 0,
      f"the snapshot holds zero, raw and delta pages ({ram['zero_pages']}, {ram['raw_pages']}, "
      f"{ram['delta_pages']})")
secs = doc["sections"]
check("regs" in secs.get("kvm-cpu (0)", {}) and "rip" in secs["kvm-cpu (0)"]["regs"],
      "the vCPU record decodes by field name from the embedded schema")
check("ioapic" in secs.get("kvm-vm (0)", {}), "the VM record decodes by field name")
check(doc.get("handshake", {}).get("vcpus") == 1, "the handshake record is shown")

out = os.path.join(tmp, "ram")
p = subprocess.run([ferry, "analyze", "--extract-ram", out, snap], capture_output=True,
                   timeout=60)
check(p.returncode == 0 and p.stdout == b"", "--extract-ram exits 0 and prints nothing")
files = os.listdir(out) if os.path.isdir(out) else []
check(len(files) == 1, f"one RAM block file ({files})")
if files:
    with open(os.path.join(out, files[0]), "rb") as fh:
        mem = fh.read()
    with open(img_path, "rb") as fh:
        img = fh.read()
    check(len(mem) == 256 << 20, "the block file has the block's size")
    sector = mem[0x7C00:0x7E00]
    # The CPU sets the accessed bit of the GDT descriptors it loads; nothing else may differ.
    bad = [i for i in range(512) if sector[i] != img[i] and sector[i] != img[i] | 1]
    check(not bad, f"the boot sector is at 0x7c00 (differences at {bad[:5]})")
    firsts = set()
    dirty_rest = 0
    for page in range(256, 25600):  # [1 MiB, 100 MiB)
        pg = mem[page * 4096:(page + 1) * 4096]
        firsts.add(pg[0])
        dirty_rest += pg[1:].count(0) != 4095
    ok = len(firsts) <= 2 and (len(firsts) == 1 or (max(firsts) - min(firsts)) in (1, 255))
    check(ok and dirty_rest == 0 and max(firsts) > 0,
          f"guest counters consistent after zero/raw/delta replay (values {sorted(firsts)}, "
          f"{dirty_rest} pages with other bytes)")

print(f"{len(failures)} failed" if failures else "all ok")
sys.exit(1 if failures else 0)
