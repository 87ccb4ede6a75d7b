#!/usr/bin/env python3
"""ferry run end to end: boot sector output on a --serial file until SIGTERM, the long-mode
firmware powering off by itself, and clear errors (exit 2 for bad options, 1 for failures).
usage: test-run.py FERRY GUEST_DIR HELLO64_BIN"""
import os
import signal
import subprocess
import sys
import tempfile
import time

ferry, guest_dir, hello64 = sys.argv[1:4]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(*args, timeout=30):
    p = subprocess.run([ferry, "run", *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# Option errors: usage status 2 and a message naming the option.
for args, needle in [
    (["--memory", "12Q", "--boot-sector", "x"], "--memory '12Q': unknown suffix"),
    (["--memory", "0", "--boot-sector", "x"], "--memory '0'"),
    (["--smp", "4,maxcpus=2", "--boot-sector", "x"], "4 vCPUs exceed maxcpus=2"),
    (["--smp", "two", "--boot-sector", "x"], "--smp: vCPU count 'two'"),
    (["--bogus"], "unknown option '--bogus'"),
    (["--boot-sector", "a", "--firmware", "b"], "at most one of"),
    (["--workload", "dirty", "--boot-sector", "x"], "cannot be combined"),
    (["--workload", "busy"], "unknown kind 'busy'"),
    (["--machine", "pc"], "--machine 'pc': unknown machine type (known: ferry-1.0, ferry-2.0)"),
    (["--qmp", "/tmp/x"], "expected unix:PATH"),
    (["--memory", "256M", "--maxmem", "128M"], "--maxmem (128 MiB) is below --memory"),
    (["--memory", "128M", "--maxmem", "200M"], "multiple of 128M"),
    (["--memory", "1G", "--maxmem", "100G"],
     "--maxmem (102400 MiB): at most 64 hotpluggable memory blocks of 128M above --memory "
     "(maxmem <= 9216 MiB)"),
    (["--device"], "--device needs a value"),
    (["--smp", "1,maxcpus=65"], "maxcpus=65 exceeds Ferry's 64 vCPU slots"),
    (["--memory"], "--memory needs a value"),
]:
    rc, out, err = run(*args)
    check(rc == 2, f"{args}: exit {rc}, want 2")
    check(needle in err, f"{args}: stderr {err!r} lacks {needle!r}")

rc, out, err = run("--help")
check(rc == 0 and "--boot-sector FILE" in out and "-S " in out, "--help lists the options")

# Too much memory: refused before anything is mapped.
rc, out, err = run("--memory", "100000G", "--boot-sector", "x")
check(rc == 1 and "more than the host's" in err, f"too much memory: {rc} {err!r}")

if not os.access("/dev/kvm", os.R_OK | os.W_OK):
    print("\n*** SKIPPED kvm-run: /dev/kvm is not usable; the KVM part did NOT run ***\n",
          file=sys.stderr)
    print("SKIPPED: /dev/kvm not usable")
    sys.exit(1 if failures else 77)

rc, out, err = run("--boot-sector", "/nonexistent/boot.img")
check(rc == 1 and "/nonexistent/boot.img: cannot open" in err, f"missing file: {err!r}")

with tempfile.TemporaryDirectory() as d:
    serial = os.path.join(d, "serial.log")
    p = subprocess.Popen([ferry, "run", "--memory", "128M", "--smp", "2,maxcpus=4",
                          "--serial", serial, "--boot-sector",
                          os.path.join(guest_dir, "dirty.img")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    text = ""
    end = time.monotonic() + 20
    while time.monotonic() < end and p.poll() is None:
        text = open(serial).read() if os.path.exists(serial) else ""
        if text.count("B") >= 2:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    check(text.startswith("AB"), f"serial file shows A then B: {text[:20]!r}")
    check(p.returncode == 0, f"SIGTERM: exit {p.returncode}, stderr {err!r}")
    check("terminating on signal TERM" in err, f"SIGTERM message: {err!r}")

# Start-up failures name the option and the reason (exit 1).
for args, needle in [
    (["--device", "cpu,id=c9,slot=9"], "--device cpu,id=c9,slot=9: device 'c9': slot 9 out of "
     "range (1 cpu slots)"),
    (["--device", "mem-block,id=m0,slot=0"], "would exceed maxmem"),
    (["--serial", "/nonexistent/dir/serial.log"], "--serial /nonexistent/dir/serial.log: "
     "cannot open: No such file or directory"),
    (["--qmp", "unix:/nonexistent/dir/qmp.sock"], "--qmp: "),
    (["--workload", "dirty,mb=200"], "needs at least 216 MiB of memory"),
    (["--memory", "4G", "--maxmem", "5G"], "needs a memory size of at most 3G"),
]:
    rc, out, err = run(*args)
    check(rc == 1, f"{args}: exit {rc}, want 1 ({err!r})")
    check(needle in err, f"{args}: stderr {err!r} lacks {needle!r}")

rc, out, err = run("--memory", "16M", "--firmware", hello64)
check(rc == 0, f"firmware: exit {rc} {err!r}")
check("ferry-fw: long mode ok" in out, f"firmware prints its line on stdio: {out!r}")
check("guest powered off" in err, f"firmware power-off message: {err!r}")

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
